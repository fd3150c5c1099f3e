//! Writing commands, and the transcript of the dialogue with every credential redacted,
//! in what is sent and in what the server echoes.

use super::*;

impl Client {
    /// Transcript lines recorded since the last call.
    pub fn take_transcript(&mut self) -> Vec<String> {
        mem::take(&mut self.transcript)
    }

    pub(super) fn command(&mut self, line: &str) {
        self.record(format!("C: {line}"));
        self.write_line(line);
    }

    /// A command carrying credentials: the transcript gets `shown` instead.
    pub(super) fn secret_command(&mut self, line: &str, shown: &str) {
        self.record(format!("C: {shown}"));
        self.write_line(line);
    }

    pub(super) fn write_line(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A server that echoes the secret back (it learns it from AUTH) must not get it
    /// into our transcript, errors or results: the secret and every AUTH line we sent
    /// are masked.
    pub(super) fn redact(&self, mut reply: Reply) -> Reply {
        let Some(credentials) = &self.config.credentials else {
            return reply;
        };
        let secret = credentials.secret_text();
        let encoded = BASE64.encode(secret);
        let secrets = [secret, encoded.as_str()]
            .into_iter()
            .chain(self.sent_secrets.iter().map(String::as_str))
            // Shorter strings would mask ordinary words; they are also no secret worth the name.
            .filter(|s| s.len() >= sasl::MIN_REDACTED_LEN);
        for secret in secrets {
            for line in &mut reply.lines {
                if line.contains(secret) {
                    *line = line.replace(secret, "<redacted>");
                }
            }
        }
        reply
    }

    pub(super) fn record(&mut self, line: String) {
        if self.config.transcript {
            self.transcript.push(line);
        }
    }

    pub(super) fn record_reply(&mut self, reply: &Reply) {
        if !self.config.transcript {
            return;
        }
        let status = reply.enhanced.map(|s| format!("{s} ")).unwrap_or_default();
        let last = reply.lines.len() - 1;
        for (i, line) in reply.lines.iter().enumerate() {
            let separator = if i == last { ' ' } else { '-' };
            // A server's words reach a terminal: no escape sequence gets through raw.
            let line = crate::command::shown(line);
            self.transcript
                .push(format!("S: {}{separator}{status}{line}", reply.code));
        }
    }
}
