//! Opening the session: the greeting, EHLO (or HELO), STARTTLS and the EHLO after it, and
//! AUTH; and QUIT.

use super::*;

/// An AUTH exchange in progress.
#[derive(Debug)]
pub(super) struct AuthState {
    pub(super) exchange: Exchange,
    /// We cancelled with `*`; after the server's reply, fail with this.
    pub(super) cancelled: Option<Error>,
}

impl Handshake<'_> {
    /// When the handshake must be done by: [`Client::timed_out`] after that.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// The driver finished the TLS handshake.
    pub fn established(self) {
        let client = self.client;
        let State::Handshake { before_greeting } = client.state else {
            unreachable!("a Handshake exists only in the handshake state")
        };
        client.tls_active = true;
        if before_greeting {
            client.state = State::Greeting;
        } else {
            // RFC 3207 section 4.2: forget everything learned before TLS.
            client.capabilities = Capabilities::default();
            client.send_ehlo();
        }
    }
}

impl Ready<'_> {
    /// Ends the session politely, in a call that began at `now`.
    pub fn quit(self, now: Instant) {
        let client = self.client;
        client.call_deadline = now.plus_ms(client.config.timeouts.total_ms);
        client.command("QUIT");
        client.state = State::Quit;
    }
}

impl Client {
    pub(super) fn on_greeting(&mut self, reply: Reply) {
        if reply.code == 220 {
            self.send_ehlo();
        } else {
            self.fail_with_reply(Phase::Greeting, "the server did not greet with 220", reply);
        }
    }

    pub(super) fn on_ehlo(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.capabilities = Capabilities::from_ehlo(&reply);
            return self.after_hello();
        }
        let needs_extensions = self.config.credentials.is_some()
            || !self.tls_active && self.config.tls == TlsMode::StartTls;
        if reply.code / 100 == 5 && !needs_extensions {
            // RFC 5321 section 3.2: an old server; HELO is enough for a plain transaction.
            self.command(&format!("HELO {}", self.ehlo_name()));
            self.state = State::Helo;
        } else if self.config.tls == TlsMode::StartTls && !self.tls_active {
            let error = Error::from_reply(
                Phase::Tls,
                ErrorKind::Tls,
                "EHLO was refused, so STARTTLS is impossible; not falling back to plaintext",
                reply,
            );
            self.fail(error);
        } else {
            self.fail_with_reply(Phase::Ehlo, "EHLO was refused", reply);
        }
    }

    pub(super) fn on_helo(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.capabilities = Capabilities::default();
            self.after_hello();
        } else {
            self.fail_with_reply(Phase::Ehlo, "HELO was refused", reply);
        }
    }

    /// After a successful EHLO or HELO: STARTTLS, AUTH, or ready.
    pub(super) fn after_hello(&mut self) {
        if self.config.tls == TlsMode::StartTls && !self.tls_active {
            if self.capabilities.has(Extension::StartTls) {
                self.command("STARTTLS");
                self.state = State::StartTls;
            } else {
                self.fail(Error::new(
                    Phase::Tls,
                    ErrorKind::Tls,
                    "the server does not offer STARTTLS; refusing to continue without TLS",
                ));
            }
            return;
        }
        let Some(credentials) = self.config.credentials.clone() else {
            self.state = State::Ready;
            return;
        };
        let offered = self.capabilities.auth_mechanisms();
        let mechanism = match Mechanism::choose(&credentials, &offered) {
            Ok(mechanism) => mechanism,
            Err(message) => return self.fail(Error::new(Phase::Auth, ErrorKind::Auth, message)),
        };
        let started = Exchange::start(
            mechanism,
            &credentials,
            &self.config.server_host,
            self.config.server_port,
            &self.config.sasl_nonce,
        );
        let (exchange, initial) = match started {
            Ok(started) => started,
            Err(error) => return self.fail(error),
        };
        match initial {
            Some(initial) => {
                let line = format!("AUTH {} {initial}", mechanism.name());
                let shown = format!("AUTH {} <credentials redacted>", mechanism.name());
                self.secret_command(&line, &shown);
                self.sent_secrets.push(initial);
            }
            None => self.command(&format!("AUTH {}", mechanism.name())),
        }
        self.state = State::Auth(Box::new(AuthState {
            exchange,
            cancelled: None,
        }));
    }

    pub(super) fn on_starttls(&mut self, reply: Reply) {
        if reply.code != 220 {
            let error = Error::from_reply(
                Phase::Tls,
                ErrorKind::Tls,
                "STARTTLS was refused; refusing to continue without TLS",
                reply,
            );
            return self.fail(error);
        }
        let injected = self.parser.buffered();
        if injected > 0 {
            // RFC 3207 section 6 / CVE-2011-0411: such bytes came before TLS, so they
            // were not protected; treating them as replies over TLS would let an attacker answer for the server.
            let message = format!(
                "the server sent {injected} bytes after its STARTTLS reply, before TLS; aborting"
            );
            return self.fail(Error::new(Phase::Tls, ErrorKind::Protocol, message));
        }
        self.state = State::Handshake {
            before_greeting: false,
        };
    }

    pub(super) fn on_auth(&mut self, reply: Reply, mut auth: Box<AuthState>) {
        if let Some(error) = auth.cancelled.take() {
            // The server's answer to our `*`; the exchange failed on our side.
            return self.fail(error);
        }
        if reply.is_positive() {
            return match auth.exchange.success() {
                Ok(()) => self.state = State::Ready,
                Err(error) => self.fail(error),
            };
        }
        if reply.code == 334 {
            match auth.exchange.challenge(&reply.text()) {
                Response::Line(line) => {
                    self.secret_command(&line, "<credentials redacted>");
                    self.sent_secrets.push(line);
                }
                Response::Cancel(error) => {
                    self.command("*");
                    auth.cancelled = Some(error);
                }
            }
            self.state = State::Auth(auth);
            return;
        }
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                Phase::Auth,
                ErrorKind::Protocol,
                "unexpected AUTH challenge",
                reply,
            ));
        }
        let with_token = self
            .config
            .credentials
            .as_ref()
            .is_some_and(|c| matches!(c.secret, Secret::BearerToken(_)));
        let refused = if with_token {
            "the server rejected the user name or token"
        } else {
            "the server rejected the user name or password"
        };
        let mut message = match reply.code {
            535 => refused.to_owned(),
            _ => format!("AUTH {} failed", auth.exchange.mechanism().name()),
        };
        if let Some(said) = auth.exchange.server_error() {
            message.push_str(&format!(" (the server said: {said})"));
        }
        self.fail(Error::from_reply(
            Phase::Auth,
            ErrorKind::Auth,
            message,
            reply,
        ));
    }

    fn ehlo_name(&self) -> &str {
        self.config
            .ehlo_name
            .as_deref()
            .unwrap_or(DEFAULT_EHLO_NAME)
    }

    pub(super) fn send_ehlo(&mut self) {
        self.command(&format!("EHLO {}", self.ehlo_name()));
        self.state = State::Ehlo;
    }
}
