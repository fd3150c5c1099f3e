//! The sendmail command line, through which cron, `git send-email`, mutt and mailx hand
//! over a message: options, then recipients, and the message on stdin.
//!
//! The options are those of Postfix's sendmail(1), plus msmtp's `-a`/`--account` and
//! `--config`, parsed as getopt(3) does there: letters may be grouped (`-ti`), a value may
//! be glued on (`-fADDR`, `-oi`, `-B8BITMIME`) or be the next argument (`-f ADDR`), and the
//! first operand or `--` ends the options. clap cannot express this. Options that only tune
//! a local MTA (`-oem`, `-odi`, `-L`, ...) are accepted and ignored. Besides sending, it
//! has the modes a system MTA answers to: `-bp` (mailq) lists the outbox, `-q` runs it,
//! `-qf` flushes it, and `-bi` (newaliases) checks the aliases file; the others (`-bs`,
//! `-bd`, `-q30m`, ...) are refused. doc/sendbox-sendmail.8 lists every option, and a
//! test holds this parser to it.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};

use sendbox::{Dsn, DsnNotify, DsnReturn, Envelope, Message, SandboxOptions, SendOptions};

use crate::config::{self, Config};
use crate::connection::Connection;
use crate::error::Error;
use crate::{dsn, exit, outbox, queue, send};

/// sendmail(1): the message on stdin, the server from the config file's account, quiet
/// on success, sysexits codes on failure.
pub async fn run(args: Vec<OsString>) -> Result<u8, Error> {
    let args = parse(args).map_err(Error::Usage)?;
    if args.help {
        print!("{USAGE}");
        return Ok(exit::OK);
    }
    if args.version {
        println!("sendbox {}", env!("CARGO_PKG_VERSION"));
        return Ok(exit::OK);
    }
    let config = Config::load(args.config.as_deref())?;
    if let Some(name) = &args.account {
        // Named for any mode: it must exist, even where it changes nothing.
        config.account(Some(name))?;
    }
    match args.mode.unwrap_or_default() {
        Mode::Send => {}
        Mode::ListQueue => return queue::list(&config),
        Mode::RunQueue { everything } => return queue::run(&config, everything).await,
        Mode::CheckAliases => return check_aliases(&config),
    }
    let account = config.account(args.account.as_deref())?.ok_or_else(|| {
        config::Error::from(config.no_default_account("sendmail needs an account"))
    })?;
    let message = read_message(io::stdin().lock(), args.ignore_dots)
        .map_err(|e| Error::Io(format!("cannot read the message: {e}")))?;
    // -t is done here rather than in the component, so that the aliases apply to the
    // header's names too.
    let (recipients, message) = if args.extract_recipients {
        extract_recipients(args.recipients.clone(), message).map_err(Error::Data)?
    } else {
        (args.recipients.clone(), message)
    };
    // Like an MTA: -f wins over the account's address, and bare names such as `root`
    // (cron's) get the domain of the account's address.
    let envelope = Envelope {
        sender: args
            .sender
            .clone()
            .or_else(|| account.address().map(str::to_owned)),
        recipients: match config.aliases()? {
            Some(aliases) => aliases.expand(&recipients).map_err(config::Error::from)?,
            None => recipients,
        },
        recipients_from_headers: false,
        qualify_domain: account.domain().map(str::to_owned),
    };
    let options = SendOptions {
        dsn: args.dsn(),
        require_tls: false,
        keep_raw_header: account.keep_header,
        // Queued, the message is signed at each attempt instead.
        dkim: None,
    };
    if config.queue.enabled {
        let queued = outbox::Envelope::new(&account.name, envelope, &options, outbox::now());
        let (verbose, report_success) = (args.verbose, args.verbose);
        return queue::accept_and_try(&config, account, verbose, report_success, queued, message)
            .await;
    }
    let options = SendOptions {
        dkim: account.dkim.as_ref().map(|d| d.signing()).transpose()?,
        ..options
    };
    let mailer = Connection::of_account(account, args.verbose)?
        .mailer(&SandboxOptions::cached())
        .await?;
    send::deliver(
        &mailer,
        &envelope,
        Message::Raw(message),
        &options,
        args.verbose,
    )
    .await
}

/// `newaliases` (`sendmail -bi`): the aliases file the config names, read and checked
/// as every send reads it, and then each name followed to its addresses, so that a pipe,
/// a file or a loop is reported now rather than when a message reaches it.
fn check_aliases(config: &Config) -> Result<u8, Error> {
    let Some(aliases) = config.aliases()? else {
        match config.file() {
            Some(file) => println!(
                "{} names no aliases file (`aliases`): nothing to check",
                file.display()
            ),
            None => println!("there is no config file, so no aliases file: nothing to check"),
        }
        return Ok(exit::OK);
    };
    let problems = aliases.problems();
    if !problems.is_empty() {
        return Err(config::Error::from(problems.join("\n")).into());
    }
    println!(
        "{}: {}, each usable",
        aliases.file().unwrap_or(Path::new("")).display(),
        queue::counted(aliases.count() as u64, "alias", "aliases")
    );
    Ok(exit::OK)
}

/// The names under which a link to sendbox is sendmail, and the options each implies:
/// `mailq` is `sendmail -bp`, `newaliases` is `sendmail -bi`, as with every MTA.
pub fn implied_by(name: &OsStr) -> Option<&'static [&'static str]> {
    match name.to_str()? {
        "sendmail" => Some(&[]),
        "mailq" => Some(&["-bp"]),
        "newaliases" => Some(&["-bi"]),
        _ => None,
    }
}

/// What a sendmail command line asks to be done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send the message on stdin (`-bm`, the default).
    #[default]
    Send,
    /// List the outbox (`-bp`, mailq).
    ListQueue,
    /// Deliver what is due (`-q`), or everything queued (`-qf`).
    RunQueue { everything: bool },
    /// Check the aliases file (`-bi`, `-I`, newaliases).
    CheckAliases,
}

/// What a sendmail command line asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendmailArgs {
    /// What a mode option asks for; `None` (no mode option) is to send.
    pub mode: Option<Mode>,
    /// The envelope sender (`-f`, `-r`); `Some("")` for the null sender (`-f '<>'`).
    pub sender: Option<String>,
    /// Also send to the addresses in the message's To, Cc and Bcc (`-t`).
    pub extract_recipients: bool,
    /// A line with a single `.` does not end the message (`-i`, `-oi`).
    pub ignore_dots: bool,
    /// The recipients given as operands, address lists split at their commas.
    pub recipients: Vec<String>,
    /// The account of the configuration file to use (`-a`, `--account`).
    pub account: Option<String>,
    /// The configuration file (`-C`, `--config`).
    pub config: Option<PathBuf>,
    /// Show the SMTP dialogue (`-v`).
    pub verbose: bool,
    /// When to send delivery status notifications (`-N`); no flag set for `never`.
    pub dsn_notify: Option<DsnNotify>,
    /// What a failure notification returns (`-R`).
    pub dsn_return: Option<DsnReturn>,
    /// The envelope identifier notifications quote back (`-V`).
    pub dsn_envid: Option<String>,
    /// `--help`: print the usage and send nothing.
    pub help: bool,
    /// `--version`: print the version and send nothing.
    pub version: bool,
}

/// What `sendbox sendmail --help` prints.
pub const USAGE: &str = "\
Usage: sendbox sendmail [OPTIONS] [--] [RECIPIENT]...
       sendmail [OPTIONS] [--] [RECIPIENT]...   (a link to sendbox named sendmail)

Sends the message read from stdin, as sendmail(1) does, through the config file's account
(its server, login and sender). Prints nothing on success; exits with sysexits(3) codes.

Options:
  -t                 also send to the message's To, Cc and Bcc, and remove its Bcc
  -i, -oi            a line with a single dot does not end the message
  -f ADDR, -r ADDR   the envelope sender [default: the account's `from`, else the
                     message's Sender or From]
  -N WHEN            delivery status notifications: never, or success,failure,delay
  -R full|hdrs       what a failure notification returns
  -V ENVID           an envelope id that notifications quote back
  -v                 print the SMTP dialogue on stderr (AUTH data redacted)
  -a, --account NAME the account of the config file [default: its default account]
  -C, --config FILE  the config file [default: $SENDBOX_CONFIG, else
                     ~/.config/sendbox/config.toml if it exists, else
                     /etc/sendbox/config.toml]
      --help         print this help
      --version      print the version

Other modes (each also a link to sendbox with the name in brackets):
  -bp                list the outbox, as `sendbox queue list` does  [mailq]
  -q                 deliver what is due in the outbox (`sendbox queue run`)
  -qf                deliver everything in the outbox now (`sendbox queue flush`)
  -bi, -I            check the aliases file the config names, with line numbers  [newaliases]
  -bm                send (the default)

Accepted and ignored, as they only tune a local MTA: -oem, -odi, -B8BITMIME, -F NAME, -L,
-G, -m, -n, -U and the like. Refused: the other modes of an MTA (-bs, -bd, -bv, -q30m).
sendbox-sendmail(8) lists every option.
";

impl SendmailArgs {
    /// The DSN request of `-N`, `-R` and `-V` (RFC 3461), if any of them was given.
    pub fn dsn(&self) -> Option<Dsn> {
        dsn::request(self.dsn_notify, self.dsn_return, self.dsn_envid.clone())
    }
}

/// Parses the arguments after the command name. Errors name the option at fault, and are
/// for the user as they are.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<SendmailArgs, String> {
    let mut parsed = SendmailArgs::default();
    let mut args = args.into_iter();
    let mut operands = Vec::new();
    while let Some(arg) = args.next() {
        let text = utf8(&arg)?;
        if text == "--" {
            break;
        } else if let Some(long) = text.strip_prefix("--") {
            parsed.long_option(long, &mut args)?;
        } else if let Some(letters) = text.strip_prefix('-').filter(|l| !l.is_empty()) {
            parsed.short_options(letters, &mut args)?;
        } else {
            // As with Postfix: options end at the first operand, so that no recipient after
            // it can be taken for an option.
            operands.push(arg);
            break;
        }
    }
    operands.extend(args);
    if parsed.help || parsed.version {
        return Ok(parsed);
    }
    if let Some(mode) = parsed.mode.filter(|&mode| mode != Mode::Send) {
        return match operands.first() {
            Some(operand) => Err(format!(
                "{} takes no recipients, but {} was given",
                mode.named(),
                operand.display()
            )),
            None => Ok(parsed),
        };
    }
    for operand in &operands {
        parsed.recipients.extend(addresses(utf8(operand)?)?);
    }
    if parsed.recipients.is_empty() && !parsed.extract_recipients {
        return Err("no recipients given (and no -t)".into());
    }
    Ok(parsed)
}

impl SendmailArgs {
    /// One argument of single-letter options, without its `-`: `t`, `ti`, `fADDR`, `oem`.
    fn short_options(
        &mut self,
        letters: &str,
        rest: &mut impl Iterator<Item = OsString>,
    ) -> Result<(), String> {
        for (at, letter) in letters.char_indices() {
            let glued = &letters[at + letter.len_utf8()..];
            match letter {
                't' => self.extract_recipients = true,
                'i' => self.ignore_dots = true,
                'v' => self.verbose = true,
                // Gateway submission, "me too", no aliasing, initial submission: nothing a
                // client does differently.
                'G' | 'm' | 'n' | 'U' => {}
                'I' => self.set_mode(Mode::CheckAliases)?,
                // Never takes the next argument: Postfix treats a lone -q specially too.
                'q' => {
                    let everything = match glued {
                        "" => false,
                        "f" => true,
                        _ => {
                            return Err(format!(
                                "-q{glued}: sendbox runs no queue daemon; run `sendmail -q` \
                             (sendbox queue run) from cron or the sendbox-queue timer"
                            ));
                        }
                    };
                    return self.set_mode(Mode::RunQueue { everything });
                }
                'C' => {
                    self.config = Some(value(letter, glued, rest)?.into());
                    return Ok(());
                }
                'A' | 'B' | 'F' | 'L' | 'N' | 'O' | 'R' | 'V' | 'X' | 'a' | 'b' | 'e' | 'f'
                | 'h' | 'o' | 'p' | 'r' => {
                    let value = value(letter, glued, rest)?;
                    return self.option_value(letter, utf8(&value)?);
                }
                _ => return Err(format!("unknown option -{letter}")),
            }
        }
        Ok(())
    }

    /// A single-letter option with its value.
    fn option_value(&mut self, letter: char, value: &str) -> Result<(), String> {
        match letter {
            'f' | 'r' => self.sender = Some(sender(letter, value)?),
            // The full name is for an MTA that writes a missing From; sendbox sends the
            // message's header as it is.
            'F' => {}
            'N' => {
                self.dsn_notify =
                    Some(dsn::notify(value).map_err(|why| format!("-N {value:?}: {why}"))?)
            }
            'R' => self.dsn_return = Some(dsn::ret(value).map_err(|why| format!("-R {why}"))?),
            'V' => self.dsn_envid = Some(dsn::envid(value).map_err(|why| format!("-V {why}"))?),
            'a' => self.account = Some(value.to_owned()),
            'b' => {
                let mode = match value {
                    "m" => Mode::Send,
                    "p" => Mode::ListQueue,
                    "i" => Mode::CheckAliases,
                    "s" | "d" => {
                        return Err(not_sending(
                            &format!("-b{value}"),
                            "for an SMTP listener, run `sendbox serve`",
                        ));
                    }
                    _ => return Err(not_sending(&format!("-b{value}"), "")),
                };
                self.set_mode(mode)?;
            }
            // Postfix looks at the first letter only.
            'o' if value.starts_with('i') => self.ignore_dots = true,
            // -A -B -L -O -X -e -h -p and the other -o: settings of a local MTA. -X names a
            // log file, which is never opened.
            _ => {}
        }
        Ok(())
    }

    /// A mode option: two that disagree are an error, not a guess.
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        if let Some(given) = self.mode.filter(|&given| given != mode) {
            return Err(format!(
                "{} and {} ask for two things; give one",
                given.named(),
                mode.named()
            ));
        }
        self.mode = Some(mode);
        Ok(())
    }

    /// A `--name` or `--name=value` option, without its `--`.
    fn long_option(
        &mut self,
        option: &str,
        rest: &mut impl Iterator<Item = OsString>,
    ) -> Result<(), String> {
        let (name, glued) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let mut value = || match glued {
            Some(value) => Ok(OsString::from(value)),
            None => rest
                .next()
                .ok_or_else(|| format!("option --{name} needs a value")),
        };
        match name {
            "account" => self.account = Some(utf8(&value()?)?.to_owned()),
            "config" => self.config = Some(value()?.into()),
            "help" if glued.is_none() => self.help = true,
            "version" if glued.is_none() => self.version = true,
            _ => return Err(format!("unknown option --{name}")),
        }
        Ok(())
    }
}

/// The value of option `-letter`: glued on, or else the next argument.
fn value(
    letter: char,
    glued: &str,
    rest: &mut impl Iterator<Item = OsString>,
) -> Result<OsString, String> {
    if glued.is_empty() {
        rest.next().ok_or_else(|| match letter {
            // sendmail's hop count, which a person may take for help.
            'h' => "option -h is sendmail's hop count and needs a value (-h N); for help, \
                    give --help"
                .to_owned(),
            letter => format!("option -{letter} needs a value"),
        })
    } else {
        Ok(glued.into())
    }
}

/// Addresses and most values must be text; only file names need not be.
fn utf8(arg: &OsStr) -> Result<&str, String> {
    arg.to_str()
        .ok_or_else(|| format!("argument {} is not valid UTF-8", arg.display()))
}

/// The error for a mode of an MTA that sendbox does not have, with what to use instead.
fn not_sending(option: &str, instead: &str) -> String {
    let instead = match instead {
        "" => String::new(),
        instead => format!("; {instead}"),
    };
    format!(
        "{option} is not supported: sendbox sendmail sends (-bm), lists the outbox (-bp), \
         runs it (-q, -qf) and checks the aliases (-bi){instead}"
    )
}

impl Mode {
    /// The option that asks for it, for messages.
    fn named(self) -> &'static str {
        match self {
            Mode::Send => "-bm",
            Mode::ListQueue => "-bp (mailq)",
            Mode::RunQueue { everything: false } => "-q",
            Mode::RunQueue { everything: true } => "-qf",
            Mode::CheckAliases => "-bi (newaliases)",
        }
    }
}

/// The address of `-f` or `-r`: `""` for `<>` or nothing.
fn sender(letter: char, value: &str) -> Result<String, String> {
    if matches!(value.trim(), "" | "<>") {
        return Ok(String::new());
    }
    let mut addresses = addresses(value)?.into_iter();
    match (addresses.next(), addresses.next()) {
        (Some(address), None) => Ok(address),
        _ => Err(format!("-{letter} {value:?} is not one address")),
    }
}

/// The addresses of an RFC 5322 address list, as sendmail reads its operands:
/// `"Doe, John" <john@example.org>, kay@example.org (Kay)` gives `john@example.org` and
/// `kay@example.org` (read by the parser the component reads headers with).
fn addresses(list: &str) -> Result<Vec<String>, String> {
    let found = sendbox_proto::parse_address_list(list)?;
    Ok(found.into_iter().map(|m| m.address).collect())
}

/// Reads the message as sendmail does: unless `ignore_dots`, it ends before a line that is
/// exactly `.` (ended by LF, CRLF or the end of input). Nothing else is changed: `..`
/// stays `..`.
pub fn read_message(input: impl Read, ignore_dots: bool) -> io::Result<Vec<u8>> {
    let mut input = BufReader::new(input);
    let mut message = Vec::new();
    if ignore_dots {
        input.read_to_end(&mut message)?;
        return Ok(message);
    }
    loop {
        let start = message.len();
        if input.read_until(b'\n', &mut message)? == 0 {
            break;
        }
        if matches!(&message[start..], b"." | b".\n" | b".\r\n") {
            message.truncate(start);
            break;
        }
    }
    Ok(message)
}

/// `-t`: the operands and then the message's To, Cc and Bcc addresses (bare names such as
/// cron's `root` as they are, for the aliases), and the message without its Bcc, read by
/// the parser the component uses. The component then gets the recipients as operands.
pub fn extract_recipients(
    operands: Vec<String>,
    message: Vec<u8>,
) -> Result<(Vec<String>, Vec<u8>), String> {
    let request = sendbox_proto::EnvelopeRequest {
        // Any sender will do: only the recipients and the bytes are kept.
        sender: Some(String::new()),
        recipients: operands,
        recipients_from_headers: true,
        qualify_domain: None,
    };
    // The header is left as it is here (no stamp is ever asked for); the component
    // completes it when it sends.
    let unused_stamp = || sendbox_proto::Stamp {
        unix_time: 0,
        unique: String::new(),
    };
    let (envelope, message) = sendbox_proto::Message::Raw(message)
        .build(request, sendbox_proto::RawHeader::AsIs, unused_stamp)
        .map_err(|e| e.to_string())?;
    Ok((envelope.recipients, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(args: &[&str]) -> Result<SendmailArgs, String> {
        parse(args.iter().map(OsString::from))
    }

    fn ok(list: &[&str]) -> SendmailArgs {
        args(list).unwrap_or_else(|e| panic!("{list:?}: {e}"))
    }

    fn err(list: &[&str]) -> String {
        args(list).expect_err("accepted")
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn git_send_email() {
        let expected = SendmailArgs {
            sender: Some("alice@example.org".into()),
            ignore_dots: true,
            recipients: strings(&["bob@example.org"]),
            ..Default::default()
        };
        assert_eq!(
            ok(&["-i", "-f", "alice@example.org", "bob@example.org"]),
            expected
        );
        assert_eq!(
            ok(&["-f", "alice@example.org", "-i", "--", "bob@example.org"]),
            expected
        );
        assert_eq!(
            ok(&[
                "-i",
                "-f",
                "alice@example.org",
                "--",
                "bob@example.org",
                "carol@example.org"
            ])
            .recipients,
            strings(&["bob@example.org", "carol@example.org"])
        );
    }

    #[test]
    fn cron() {
        // Debian's cron.
        assert_eq!(
            ok(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]),
            SendmailArgs {
                ignore_dots: true,
                recipients: strings(&["root"]),
                ..Default::default()
            }
        );
        // cronie.
        assert_eq!(
            ok(&[
                "-FCronDaemon",
                "-i",
                "-odi",
                "-oem",
                "-oi",
                "-t",
                "-f",
                "root"
            ]),
            SendmailArgs {
                sender: Some("root".into()),
                extract_recipients: true,
                ignore_dots: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn mutt() {
        assert_eq!(
            ok(&["-oem", "-oi", "--", "bob@x", "carol@y"]),
            SendmailArgs {
                ignore_dots: true,
                recipients: strings(&["bob@x", "carol@y"]),
                ..Default::default()
            }
        );
        assert_eq!(
            ok(&[
                "-B8BITMIME",
                "-N",
                "success,failure",
                "-R",
                "hdrs",
                "-V",
                "env-1",
                "-oem",
                "-oi",
                "-f",
                "alice@x",
                "--",
                "bob@x",
            ]),
            SendmailArgs {
                sender: Some("alice@x".into()),
                ignore_dots: true,
                recipients: strings(&["bob@x"]),
                dsn_notify: Some(DsnNotify::SUCCESS | DsnNotify::FAILURE),
                dsn_return: Some(DsnReturn::Headers),
                dsn_envid: Some("env-1".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn values_glued_or_separate() {
        for (glued, separate) in [
            ("-falice@x", ["-f", "alice@x"]),
            ("-ralice@x", ["-r", "alice@x"]),
            ("-FAlice Doe", ["-F", "Alice Doe"]),
            ("-Ndelay", ["-N", "delay"]),
            ("-Rfull", ["-R", "full"]),
            ("-Venv-1", ["-V", "env-1"]),
            ("-B8BITMIME", ["-B", "8BITMIME"]),
            ("-C/etc/sendbox.toml", ["-C", "/etc/sendbox.toml"]),
            ("-Ltag", ["-L", "tag"]),
            ("-X/var/log/x", ["-X", "/var/log/x"]),
            ("-h17", ["-h", "17"]),
            ("-awork", ["-a", "work"]),
            ("-oi", ["-o", "i"]),
            ("-Oopt=1", ["-O", "opt=1"]),
            ("-bm", ["-b", "m"]),
        ] {
            let one = ok(&[glued, "bob@x"]);
            assert_eq!(one, ok(&[separate[0], separate[1], "bob@x"]), "{glued}");
            assert_eq!(one.recipients, strings(&["bob@x"]), "{glued}");
        }
        let parsed = ok(&[
            "-FAlice Doe",
            "-Venv-1",
            "-C/etc/sendbox.toml",
            "-awork",
            "bob@x",
        ]);
        assert_eq!(parsed.dsn_envid.as_deref(), Some("env-1"));
        assert_eq!(parsed.config, Some(PathBuf::from("/etc/sendbox.toml")));
        assert_eq!(parsed.account.as_deref(), Some("work"));
        assert_eq!(ok(&["-ralice@x", "b"]).sender.as_deref(), Some("alice@x"));
    }

    #[test]
    fn long_options() {
        let expected = SendmailArgs {
            account: Some("work".into()),
            config: Some("/c.toml".into()),
            recipients: strings(&["bob@x"]),
            ..Default::default()
        };
        assert_eq!(
            ok(&["--account", "work", "--config", "/c.toml", "bob@x"]),
            expected
        );
        assert_eq!(
            ok(&["--account=work", "--config=/c.toml", "bob@x"]),
            expected
        );
    }

    #[test]
    fn grouped_letters() {
        let parsed = ok(&["-tiv"]);
        assert!(parsed.extract_recipients && parsed.ignore_dots && parsed.verbose);
        let parsed = ok(&["-itfalice@x"]);
        assert_eq!(parsed.sender.as_deref(), Some("alice@x"));
        assert!(parsed.extract_recipients && parsed.ignore_dots);
    }

    #[test]
    fn null_sender() {
        for form in [
            &["-f", "<>", "b"][..],
            &["-f<>", "b"],
            &["-f", "", "b"],
            &["-r", "<>", "b"],
        ] {
            assert_eq!(ok(form).sender.as_deref(), Some(""), "{form:?}");
        }
        assert_eq!(
            ok(&["-f", "Alice <alice@x>", "b"]).sender.as_deref(),
            Some("alice@x")
        );
        assert!(err(&["-f", "a@x, b@y", "c"]).contains("not one address"));
    }

    #[test]
    fn ignored_options() {
        for option in [
            "-oem", "-oee", "-oep", "-oeq", "-oew", "-om", "-oo", "-odi", "-odb", "-odq", "-oXfoo",
            "-O", "-B", "-L", "-U", "-em", "-n", "-X", "-h", "-G", "-m", "-Am", "-bm",
        ] {
            // Options with a value take the next argument; give them one.
            let parsed = ok(&[option, "value", "bob@x"]);
            assert!(!parsed.ignore_dots, "{option}");
            assert!(
                parsed.recipients.ends_with(&strings(&["bob@x"])),
                "{option}: {parsed:?}"
            );
        }
        assert_eq!(
            ok(&["-X", "/nonexistent/log", "b"]).recipients,
            strings(&["b"])
        );
        assert!(ok(&["-v", "b"]).verbose);
    }

    #[test]
    fn the_modes_of_a_system_mta() {
        let mode = |list: &[&str]| ok(list).mode.unwrap_or_default();
        assert_eq!(mode(&["-bp"]), Mode::ListQueue);
        assert_eq!(mode(&["-b", "p"]), Mode::ListQueue);
        assert_eq!(mode(&["-q"]), Mode::RunQueue { everything: false });
        assert_eq!(mode(&["-qf"]), Mode::RunQueue { everything: true });
        assert_eq!(mode(&["-bi"]), Mode::CheckAliases);
        assert_eq!(mode(&["-I"]), Mode::CheckAliases);
        // What the links' names imply, then what the caller adds.
        assert_eq!(mode(implied_by("mailq".as_ref()).unwrap()), Mode::ListQueue);
        assert_eq!(mode(&["-bp", "-v"]), Mode::ListQueue);
        assert_eq!(
            mode(implied_by("newaliases".as_ref()).unwrap()),
            Mode::CheckAliases
        );
        assert_eq!(implied_by("sendmail".as_ref()), Some(&[][..]));
        assert_eq!(implied_by("sendbox".as_ref()), None);
        assert_eq!(mode(&["-bm", "b"]), Mode::Send);
        assert_eq!(
            err(&["-bp", "bob@x"]),
            "-bp (mailq) takes no recipients, but bob@x was given"
        );
        assert_eq!(
            err(&["-bp", "-q"]),
            "-bp (mailq) and -q ask for two things; give one"
        );
        assert!(err(&["-bi", "-bm", "b"]).contains("ask for two things"));
        // In either order.
        for (first, second) in [("-bm", "-bp"), ("-bm", "-q"), ("-bm", "-bi"), ("-q", "-qf")] {
            assert!(
                err(&[first, second]).contains("ask for two things"),
                "{first} {second}"
            );
        }
        assert_eq!(ok(&["-bm", "-bm", "b"]).mode, Some(Mode::Send));
        assert_eq!(ok(&["b"]).mode, None);
    }

    #[test]
    fn other_modes_are_refused() {
        for (mode, named) in [
            (&["-bs"][..], "-bs"),
            (&["-bd"], "-bd"),
            (&["-bv", "bob@x"], "-bv"),
            (&["-tbt"], "-bt"),
        ] {
            let message = err(mode);
            assert!(
                message.starts_with(&format!("{named} is not supported: sendbox sendmail sends")),
                "{mode:?}: {message}"
            );
        }
        for listener in ["-bs", "-bd"] {
            assert!(err(&[listener]).ends_with("; for an SMTP listener, run `sendbox serve`"));
        }
        for daemon in ["-q30m", "-qRexample.org", "-qI1234"] {
            let message = err(&[daemon]);
            assert!(
                message.starts_with(&format!("{daemon}: sendbox runs no queue daemon")),
                "{message}"
            );
        }
    }

    /// The options sendbox-sendmail(8) lists: each `\-x` or `\-\-name` at the start of a
    /// tagged paragraph's tag.
    fn page_options() -> Vec<String> {
        let mut tags = Vec::new();
        let mut lines = crate::generate::SENDMAIL_PAGE.1.lines();
        while let Some(line) = lines.next() {
            if line == ".TP"
                && let Some(tag) = lines.next()
            {
                let tag = ["\\fB", "\\fI", "\\fR"]
                    .iter()
                    .fold(tag.replace("\\-", "-"), |tag, font| tag.replace(font, ""));
                tags.extend(
                    tag.split([' ', ',', '"'])
                        .filter(|word| word.starts_with('-'))
                        .map(str::to_owned),
                );
            }
        }
        tags
    }

    /// Every letter the parser does not call unknown, with a value glued on or not, must
    /// be on the page; so must every long option it takes.
    #[test]
    fn the_page_lists_every_option_the_parser_knows() {
        let listed = page_options();
        assert!(listed.len() > 20, "too few options found: {listed:?}");
        for letter in (b'!'..=b'~').map(char::from).filter(|&c| c != '-') {
            let alone = args(&[&format!("-{letter}"), "value", "bob@x"]);
            let known = !matches!(&alone, Err(e) if e.starts_with("unknown option"));
            if known {
                assert!(
                    listed
                        .iter()
                        .any(|tag| tag.starts_with(&format!("-{letter}"))),
                    "-{letter} is known to the parser ({alone:?}) but not in sendbox-sendmail(8)"
                );
            }
        }
        for mode in ["m", "p", "i"] {
            assert!(
                listed.contains(&format!("-b{mode}")),
                "-b{mode}: {listed:?}"
            );
        }
        // The long options any sendmail or msmtp user might try, and those on the page.
        let candidates = [
            "account",
            "config",
            "help",
            "version",
            "host",
            "port",
            "from",
            "auth",
            "user",
            "tls",
            "timeout",
            "debug",
            "read-recipients",
            "read-envelope-from",
            "file",
            "logfile",
            "syslog",
            "domain",
            "dsn-notify",
            "dsn-return",
            "serverinfo",
            "rmqs",
            "protocol",
            "passwordeval",
            "add-missing-from-header",
            "verbose",
            "queue",
        ];
        let on_page = listed.iter().filter_map(|tag| tag.strip_prefix("--"));
        for name in candidates.into_iter().chain(on_page) {
            let given = args(&[&format!("--{name}"), "value", "bob@x"]);
            let known = !matches!(&given, Err(e) if e.starts_with("unknown option"));
            assert_eq!(
                known,
                listed.contains(&format!("--{name}")),
                "--{name}: the parser says {given:?}; the page must list exactly what it takes"
            );
        }
    }

    #[test]
    fn bad_command_lines() {
        assert_eq!(err(&["-d", "bob@x"]), "unknown option -d");
        assert_eq!(err(&["-tZ", "bob@x"]), "unknown option -Z");
        assert_eq!(err(&["--foo=1", "bob@x"]), "unknown option --foo");
        assert_eq!(err(&["-i", "-f"]), "option -f needs a value");
        assert!(err(&["-h"]).ends_with("for help, give --help"));
        assert_eq!(err(&["--account"]), "option --account needs a value");
        assert_eq!(err(&[]), "no recipients given (and no -t)");
        assert_eq!(err(&["-i", "--"]), "no recipients given (and no -t)");
        assert_eq!(err(&["-i", ""]), "no recipients given (and no -t)");
    }

    #[test]
    fn dsn_values() {
        assert_eq!(
            ok(&["-N", "never", "b"]).dsn_notify,
            Some(DsnNotify::empty())
        );
        assert_eq!(ok(&["-NNEVER", "b"]).dsn_notify, Some(DsnNotify::empty()));
        assert_eq!(
            ok(&["-N", "delay, Success,delay", "b"]).dsn_notify,
            Some(DsnNotify::DELAY | DsnNotify::SUCCESS)
        );
        assert!(err(&["-N", "never,success", "b"]).contains("never goes alone"));
        assert!(err(&["-N", "sometimes", "b"]).contains("\"sometimes\" is not never"));
        assert!(err(&["-N", "", "b"]).contains("is not never"));
        assert_eq!(ok(&["-R", "FULL", "b"]).dsn_return, Some(DsnReturn::Full));
        assert!(err(&["-R", "partial", "b"]).contains("not full or hdrs"));
        assert!(err(&["-V", &"x".repeat(101), "b"]).contains("longer than 100 characters"));
        assert!(err(&["-V", &"+".repeat(40), "b"]).contains("longer than 100 characters encoded"));
        assert!(err(&["-V", "a\tb", "b"]).contains("must be printable ASCII"));
        assert!(err(&["-V", "", "b"]).contains("must be printable ASCII"));
    }

    #[test]
    fn options_end_at_the_first_operand() {
        assert_eq!(ok(&["bob@x", "-t"]).recipients, strings(&["bob@x", "-t"]));
        assert_eq!(ok(&["--", "-t"]).recipients, strings(&["-t"]));
    }

    #[test]
    fn recipient_lists() {
        assert_eq!(
            ok(&["a@x, b@y", "c@z,", ",d@w"]).recipients,
            strings(&["a@x", "b@y", "c@z", "d@w"])
        );
        assert_eq!(
            ok(&[r#""Doe, John" <john@x>, kay@y (Kay, K.), <z@z>"#]).recipients,
            strings(&["john@x", "kay@y", "z@z"])
        );
        // Refused rather than changed into another address.
        assert!(err(&[r#""john \"j, d\" doe"@x"#]).contains("quoted or empty local part"));
        assert!(err(&["bob@x\nBcc: eve@y"]).contains("line break"));
    }

    #[cfg(unix)]
    #[test]
    fn arguments_that_are_not_utf8() {
        use std::os::unix::ffi::OsStringExt as _;
        let bad = || OsString::from_vec(b"bob\xff@x".to_vec());
        let message = parse([bad()]).unwrap_err();
        assert!(message.contains("is not valid UTF-8"), "{message}");
        let message = parse([OsString::from("-f"), bad(), "b".into()]).unwrap_err();
        assert!(message.contains("is not valid UTF-8"), "{message}");
        // A file name need not be UTF-8.
        let parsed = parse([OsString::from("-C"), bad(), "b".into()]).unwrap();
        assert_eq!(parsed.config, Some(PathBuf::from(bad())));
        let parsed = parse([OsString::from("--config"), bad(), "b".into()]).unwrap();
        assert_eq!(parsed.config, Some(PathBuf::from(bad())));
    }

    fn read(input: &str, ignore_dots: bool) -> String {
        String::from_utf8(read_message(input.as_bytes(), ignore_dots).unwrap()).unwrap()
    }

    #[test]
    fn a_dot_line_ends_the_message() {
        assert_eq!(read("a\n.\nb\n", false), "a\n");
        assert_eq!(read("a\r\n.\r\nb\r\n", false), "a\r\n");
        assert_eq!(read("a\n.", false), "a\n");
        assert_eq!(read(".\n", false), "");
        assert_eq!(read("a\n..\nb\n", false), "a\n..\nb\n");
        assert_eq!(read("a\n. \n .\n.x\nb", false), "a\n. \n .\n.x\nb");
        assert_eq!(read("a\r\nlast", false), "a\r\nlast");
        assert_eq!(read("", false), "");
    }

    #[test]
    fn ignore_dots_reads_to_the_end() {
        for input in ["a\n.\nb\n", "a\r\n.\r\nb", "a\n..\nb\n", "a\n.", "last"] {
            assert_eq!(read(input, true), input);
        }
    }
}
