//! A command's report on standard output. A reader that went away (`mailq | head -1`) ends
//! the report quietly, as it does for C tools; any other failure to write (a full disk) is
//! an error that exits 74. Never a panic, which `println!` would be.

use std::fmt;
use std::io::{self, Write as _};

use crate::error::Error;

/// Lines written to standard output, buffered; the first failure stops the rest.
pub struct Output {
    out: io::BufWriter<io::StdoutLock<'static>>,
    failed: Option<io::Error>,
}

impl Output {
    pub fn new() -> Output {
        Output {
            out: io::BufWriter::new(io::stdout().lock()),
            failed: None,
        }
    }

    /// Writes one line: `line(format_args!(...))`.
    pub fn line(&mut self, text: fmt::Arguments<'_>) {
        if self.failed.is_none()
            && let Err(e) = writeln!(self.out, "{text}")
        {
            self.failed = Some(e);
        }
    }

    /// Flushes what is buffered, and says whether everything was written.
    pub fn finish(mut self) -> Result<(), Error> {
        let failed = match self.failed.take() {
            Some(e) => Some(e),
            None => self.out.flush().err(),
        };
        match failed {
            None => Ok(()),
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Some(e) => Err(Error::Io(format!("cannot write to standard output: {e}"))),
        }
    }
}
