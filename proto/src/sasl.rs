//! SASL client mechanisms for SMTP AUTH (RFC 4954): SCRAM-SHA-256 (RFC 5802, RFC 7677),
//! PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), OAUTHBEARER (RFC 7628) and XOAUTH2.
//!
//! An [`Exchange`] turns the server's 334 challenges into responses; the SMTP dialogue
//! owns the lines. Nothing here draws random numbers or reads a clock, so it builds for
//! wasm32-wasip2 as it is: the caller brings the SCRAM nonce ([`nonce_from_random`]).

use std::{fmt, mem};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Phase};

type HmacSha256 = Hmac<Sha256>;

/// Reads what servers send: some leave out the `=` padding.
const BASE64_IN: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The most SCRAM iterations we compute: a hostile server could otherwise ask for
/// billions and hold the CPU. Deployed servers use 4096 to a few hundred thousand.
const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// Passwords and tokens at least this long are masked wherever a server echoes them.
pub const MIN_REDACTED_LEN: usize = 4;

/// What proves the identity. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// For SCRAM-SHA-256, PLAIN, LOGIN and CRAM-MD5.
    Password(String),
    /// An OAuth 2.0 access token (RFC 6750), for OAUTHBEARER and XOAUTH2.
    BearerToken(String),
}

impl Secret {
    fn text(&self) -> &str {
        match self {
            Secret::Password(text) | Secret::BearerToken(text) => text,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Secret::Password(_) => "password",
            Secret::BearerToken(_) => "bearer token",
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::BearerToken(_) => f.write_str("BearerToken(<redacted>)"),
        }
    }
}

/// Who logs in, with what, and optionally which mechanism. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity: the user name, often an address.
    pub username: String,
    /// The password or token.
    pub secret: Secret,
    /// The mechanism to use, or `None` for the strongest one the server and secret allow.
    pub mechanism: Option<Mechanism>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &self.secret)
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

impl Credentials {
    /// A user name and password; the mechanism is chosen with the server.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            secret: Secret::Password(password.into()),
            mechanism: None,
        }
    }

    /// A user name and OAuth 2.0 access token.
    pub fn bearer_token(username: impl Into<String>, token: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            secret: Secret::BearerToken(token.into()),
            mechanism: None,
        }
    }

    /// Uses this mechanism only (CRAM-MD5 is only ever used this way).
    pub fn with_mechanism(mut self, mechanism: Mechanism) -> Self {
        self.mechanism = Some(mechanism);
        self
    }

    /// Refuses credentials that no mechanism they may use can encode: PLAIN separates
    /// fields with NUL, the OAuth mechanisms with 0x01; a named mechanism must take this
    /// kind of secret, and SCRAM-SHA-256, if named, must get values SASLprep accepts.
    pub fn check(&self) -> Result<(), Error> {
        if self.username.is_empty() {
            return Err(Error::invalid_input(Phase::Auth, "the user name is empty"));
        }
        let secret = self.secret.text();
        if self.username.contains('\0') || secret.contains('\0') {
            return Err(Error::invalid_input(
                Phase::Auth,
                format!(
                    "the user name or {} contains a NUL character",
                    self.secret.kind()
                ),
            ));
        }
        if matches!(self.secret, Secret::BearerToken(_))
            && (self.username.contains('\x01') || secret.contains('\x01'))
        {
            return Err(Error::invalid_input(
                Phase::Auth,
                "the user name or bearer token contains a 0x01 character, which separates OAuth fields",
            ));
        }
        if let Some(mechanism) = self.mechanism {
            mechanism
                .fits(&self.secret)
                .map_err(|message| Error::invalid_input(Phase::Auth, message))?;
            if mechanism == Mechanism::ScramSha256 {
                self.scram_names()?;
            }
        }
        Ok(())
    }

    /// The secret's text (password or token), for masking server echoes.
    pub fn secret_text(&self) -> &str {
        self.secret.text()
    }

    /// The user name and password as SCRAM sends them (RFC 5802 section 5.1): both
    /// through SASLprep, then ',' and '=' escaped in the user name.
    fn scram_names(&self) -> Result<(String, String), Error> {
        let username = stringprep::saslprep(&self.username).map_err(|e| {
            Error::invalid_input(
                Phase::Auth,
                format!("SCRAM-SHA-256 cannot use this user name: SASLprep (RFC 4013) finds {e}"),
            )
        })?;
        // The stringprep error names the offending character, which must not leak.
        let password = stringprep::saslprep(self.secret.text()).map_err(|_| {
            Error::invalid_input(
                Phase::Auth,
                "SCRAM-SHA-256 cannot use this password: SASLprep (RFC 4013) forbids a character in it",
            )
        })?;
        Ok((saslname(&username), password.into_owned()))
    }
}

/// A SASL mechanism sendbox can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// Challenge-response with a salted hash; the server proves it knows the password too.
    ScramSha256,
    /// One round trip, the password in the initial response.
    Plain,
    /// Two prompts; same strength as PLAIN, offered by older servers.
    Login,
    /// Keyed MD5 of a server challenge. Weak (the server stores the password as it is,
    /// and MD5 is broken), so used only when named.
    CramMd5,
    /// An OAuth 2.0 bearer token, the standard way (RFC 7628).
    OAuthBearer,
    /// An OAuth 2.0 bearer token, the way Google and Microsoft started with.
    XOAuth2,
}

impl Mechanism {
    /// Chosen for a password when none is named, strongest first.
    const FOR_PASSWORD: [Mechanism; 3] =
        [Mechanism::ScramSha256, Mechanism::Plain, Mechanism::Login];
    /// Chosen for a token when none is named, standard first.
    const FOR_TOKEN: [Mechanism; 2] = [Mechanism::OAuthBearer, Mechanism::XOAuth2];

    /// The name in `AUTH` commands and the EHLO keyword.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// Whether it logs in with an OAuth 2.0 bearer token rather than a password.
    pub fn takes_token(self) -> bool {
        matches!(self, Mechanism::OAuthBearer | Mechanism::XOAuth2)
    }

    fn fits(self, secret: &Secret) -> Result<(), String> {
        match (self.takes_token(), secret) {
            (true, Secret::Password(_)) => Err(format!(
                "{} needs a bearer token, not a password",
                self.name()
            )),
            (false, Secret::BearerToken(_)) => Err(format!(
                "{} needs a password, not a bearer token",
                self.name()
            )),
            _ => Ok(()),
        }
    }

    /// The mechanism to use with these credentials, given the server's EHLO AUTH list.
    ///
    /// A mechanism named in the credentials is used if the server offers it
    /// (case-insensitively), never replaced. Otherwise the first offered of
    /// SCRAM-SHA-256, PLAIN, LOGIN for a password (SCRAM only if SASLprep accepts the
    /// user name and password), or OAUTHBEARER, XOAUTH2 for a token. CRAM-MD5 only by
    /// name. `Err` explains, for the user, why none fits.
    pub fn choose(credentials: &Credentials, offered: &[String]) -> Result<Mechanism, String> {
        if offered.is_empty() {
            return Err("the server offers no AUTH".to_owned());
        }
        let offers = |m: Mechanism| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name()));
        let offered_text = offered.join(" ");
        if let Some(named) = credentials.mechanism {
            named.fits(&credentials.secret)?;
            return if offers(named) {
                Ok(named)
            } else {
                Err(format!(
                    "the server offers AUTH {offered_text} but not {}, which the credentials name",
                    named.name()
                ))
            };
        }
        let usable: Vec<Mechanism> = match credentials.secret {
            Secret::Password(_) => {
                // PLAIN and LOGIN send the password as it is, so a password that SASLprep
                // refuses still works with them.
                let scram = credentials.scram_names().is_ok();
                Self::FOR_PASSWORD
                    .into_iter()
                    .filter(|&m| scram || m != Mechanism::ScramSha256)
                    .collect()
            }
            Secret::BearerToken(_) => Self::FOR_TOKEN.to_vec(),
        };
        if let Some(&chosen) = usable.iter().find(|&&m| offers(m)) {
            return Ok(chosen);
        }
        let names: Vec<&str> = usable.iter().map(|m| m.name()).collect();
        let mut message = format!(
            "the server offers AUTH {offered_text} but sendbox can use {} with a {}",
            either(&names),
            credentials.secret.kind()
        );
        if offers(Mechanism::ScramSha256) && !usable.contains(&Mechanism::ScramSha256) {
            message.push_str(
                "; SCRAM-SHA-256 cannot take this user name or password (SASLprep, RFC 4013)",
            );
        }
        Err(message)
    }
}

/// "A", "A or B", "A, B or C".
fn either(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A printable client nonce for SCRAM: base64 of random bytes from the caller (at least
/// 18 of them for RFC 5802's "at least 128 bits" with margin).
pub fn nonce_from_random(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// What to send back to a challenge.
#[derive(Clone, PartialEq, Eq)]
pub enum Response {
    /// Send this line (it carries credentials: never put it in a transcript).
    Line(String),
    /// Abort the exchange: send "*" and, after the server's reply, fail with this error.
    Cancel(Error),
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Line(_) => f.write_str("Line(<redacted>)"),
            Response::Cancel(error) => f.debug_tuple("Cancel").field(error).finish(),
        }
    }
}

/// One SASL exchange, driven by the SMTP dialogue: every string in and out is the
/// base64 text of an AUTH line (RFC 4954), not decoded bytes. `Debug` shows no secret.
pub struct Exchange {
    mechanism: Mechanism,
    step: Step,
    server_error: Option<String>,
}

/// What the next challenge, if any, means.
enum Step {
    /// LOGIN: the next prompt asks for the user name.
    LoginUser { username: String, password: String },
    /// LOGIN: the next prompt asks for the password.
    LoginPassword { password: String },
    /// CRAM-MD5: the next challenge is the server's timestamp to sign.
    CramMd5 { username: String, password: String },
    /// SCRAM: the next challenge is server-first; the password is SASLprepped.
    ScramServerFirst {
        password: String,
        client_first_bare: String,
        nonce: String,
    },
    /// SCRAM: the next challenge is server-final, whose verifier must match this MAC
    /// (ServerKey over AuthMessage).
    ScramServerFinal { server_signature: HmacSha256 },
    /// SCRAM: the server proved it knows the password; only the outcome may follow.
    ScramVerified,
    /// OAUTHBEARER or XOAUTH2: a challenge can only be the server's error report.
    OAuthError,
    /// Everything was sent (or the exchange was cancelled); only the outcome may follow.
    Done,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::LoginUser { .. } => "login-user",
            Step::LoginPassword { .. } => "login-password",
            Step::CramMd5 { .. } => "cram-md5-challenge",
            Step::ScramServerFirst { .. } => "scram-server-first",
            Step::ScramServerFinal { .. } => "scram-server-final",
            Step::ScramVerified => "scram-verified",
            Step::OAuthError => "oauth-outcome",
            Step::Done => "done",
        }
    }
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("mechanism", &self.mechanism)
            .field("step", &self.step.name())
            .field("server_error", &self.server_error)
            .finish()
    }
}

impl Exchange {
    /// Starts an exchange: returns it and the initial response for the
    /// `AUTH <NAME> <initial>` line, if the mechanism has one (PLAIN, SCRAM-SHA-256,
    /// OAUTHBEARER, XOAUTH2; not LOGIN or CRAM-MD5).
    ///
    /// `host` and `port` name the server for OAUTHBEARER; `client_nonce` is SCRAM's
    /// (printable ASCII without ',', see [`nonce_from_random`]); other mechanisms ignore them.
    pub fn start(
        mechanism: Mechanism,
        credentials: &Credentials,
        host: &str,
        port: u16,
        client_nonce: &str,
    ) -> Result<(Exchange, Option<String>), Error> {
        credentials.check()?;
        mechanism
            .fits(&credentials.secret)
            .map_err(|message| Error::invalid_input(Phase::Auth, message))?;
        let username = &credentials.username;
        let secret = credentials.secret_text();
        let (step, initial) = match mechanism {
            // No authorisation identity: act as the user who logs in.
            Mechanism::Plain => (Step::Done, Some(format!("\0{username}\0{secret}"))),
            Mechanism::Login => (
                Step::LoginUser {
                    username: username.clone(),
                    password: secret.to_owned(),
                },
                None,
            ),
            Mechanism::CramMd5 => (
                Step::CramMd5 {
                    username: username.clone(),
                    password: secret.to_owned(),
                },
                None,
            ),
            Mechanism::ScramSha256 => {
                if client_nonce.is_empty()
                    || !client_nonce
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b',')
                {
                    return Err(Error::invalid_input(
                        Phase::Auth,
                        "the SCRAM client nonce must be printable ASCII without ','",
                    ));
                }
                let (name, password) = credentials.scram_names()?;
                let client_first_bare = format!("n={name},r={client_nonce}");
                // "n,,": no channel binding, no authorisation identity.
                let initial = format!("n,,{client_first_bare}");
                let step = Step::ScramServerFirst {
                    password,
                    client_first_bare,
                    nonce: client_nonce.to_owned(),
                };
                (step, Some(initial))
            }
            Mechanism::OAuthBearer => {
                if host.contains('\x01') {
                    return Err(Error::invalid_input(
                        Phase::Auth,
                        "the host name contains a 0x01 character, which separates OAuth fields",
                    ));
                }
                let authzid = saslname(username);
                let initial = format!(
                    "n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {secret}\x01\x01"
                );
                (Step::OAuthError, Some(initial))
            }
            Mechanism::XOAuth2 => {
                let initial = format!("user={username}\x01auth=Bearer {secret}\x01\x01");
                (Step::OAuthError, Some(initial))
            }
        };
        let exchange = Exchange {
            mechanism,
            step,
            server_error: None,
        };
        Ok((exchange, initial.map(|raw| BASE64.encode(raw))))
    }

    /// The server sent `334 <challenge>`; returns what to send back.
    ///
    /// LOGIN answers its two prompts by order, without reading them: their wording
    /// varies and some servers do not even encode them. OAUTHBEARER and XOAUTH2 take a
    /// challenge as the server's error report ([`Exchange::server_error`]) and answer as
    /// their specifications ask, so that the server can send its failure reply.
    /// SCRAM-SHA-256 answers server-final with an empty line once it has verified it
    /// (RFC 4954: SMTP has no additional data with success).
    pub fn challenge(&mut self, challenge: &str) -> Response {
        let outcome = match mem::replace(&mut self.step, Step::Done) {
            Step::LoginUser { username, password } => {
                self.step = Step::LoginPassword { password };
                Ok(Response::Line(BASE64.encode(username)))
            }
            Step::LoginPassword { password } => Ok(Response::Line(BASE64.encode(password))),
            Step::CramMd5 { username, password } => decode(challenge).map(|timestamp| {
                Response::Line(BASE64.encode(cram_md5(&username, &password, &timestamp)))
            }),
            Step::ScramServerFirst {
                password,
                client_first_bare,
                nonce,
            } => decode(challenge)
                .and_then(|server_first| {
                    scram_client_final(&password, &client_first_bare, &nonce, &server_first)
                })
                .map(|(line, server_signature)| {
                    self.step = Step::ScramServerFinal { server_signature };
                    Response::Line(line)
                }),
            Step::ScramServerFinal { server_signature } => decode(challenge)
                .and_then(|server_final| scram_verify(server_signature, &server_final))
                .map(|()| {
                    self.step = Step::ScramVerified;
                    Response::Line(String::new())
                }),
            Step::OAuthError => decode(challenge).map(|report| {
                self.server_error = Some(printable(&String::from_utf8_lossy(&report)));
                Response::Line(match self.mechanism {
                    // A lone 0x01 (RFC 7628 section 3.2.3).
                    Mechanism::OAuthBearer => "AQ==".to_owned(),
                    _ => String::new(),
                })
            }),
            Step::ScramVerified | Step::Done => {
                Err(protocol("the server sent one AUTH challenge too many"))
            }
        };
        outcome.unwrap_or_else(Response::Cancel)
    }

    /// The server said 235. For SCRAM-SHA-256 that is a success only if the server's
    /// signature was verified: otherwise an impostor could accept any password.
    pub fn success(&self) -> Result<(), Error> {
        if self.mechanism == Mechanism::ScramSha256 && !matches!(self.step, Step::ScramVerified) {
            return Err(Error::new(
                Phase::Auth,
                ErrorKind::Auth,
                "the server accepted the SCRAM-SHA-256 login without proving it knows the password",
            ));
        }
        Ok(())
    }

    /// What the server said about a failed OAuth token (its decoded JSON error
    /// challenge, control characters made spaces), if it said anything.
    pub fn server_error(&self) -> Option<&str> {
        self.server_error.as_deref()
    }

    /// The mechanism in use.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
}

fn protocol(message: impl Into<String>) -> Error {
    Error::new(Phase::Auth, ErrorKind::Protocol, message)
}

fn decode(challenge: &str) -> Result<Vec<u8>, Error> {
    BASE64_IN
        .decode(challenge.trim())
        .map_err(|_| protocol("the server's AUTH challenge is not base64"))
}

/// A user name in a SCRAM or GS2 header, where ',' ends a field (RFC 5802 section 5.1).
fn saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Server text bound for messages and transcripts: control characters could forge
/// lines or terminal output.
fn printable(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.trim().to_owned()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The CRAM-MD5 response before base64: `user hex(HMAC-MD5(password, timestamp))`.
fn cram_md5(username: &str, password: &str, timestamp: &[u8]) -> String {
    let mut mac =
        Hmac::<Md5>::new_from_slice(password.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp);
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{username} {digest}")
}

/// Answers server-first (RFC 5802 section 3): returns client-final, base64, and the MAC
/// that server-final's verifier must match.
fn scram_client_final(
    password: &str,
    client_first_bare: &str,
    client_nonce: &str,
    server_first: &[u8],
) -> Result<(String, HmacSha256), Error> {
    let server_first = std::str::from_utf8(server_first)
        .map_err(|_| protocol("the SCRAM server-first message is not UTF-8"))?;
    // r=, s=, i= in this order; a leading m= (a mandatory extension) fails here too.
    let mut fields = server_first.split(',');
    let mut field = |name: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .ok_or_else(|| {
                protocol(format!(
                    "the SCRAM server-first message lacks {name} where expected"
                ))
            })
    };
    let nonce = field("r=")?;
    let salt = field("s=")?;
    let iterations = field("i=")?;
    // Our nonce, extended by the server's: otherwise the proof could be replayed.
    if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
        return Err(protocol("the server's SCRAM nonce does not extend ours"));
    }
    let salt = BASE64_IN
        .decode(salt)
        .map_err(|_| protocol("the server's SCRAM salt is not base64"))?;
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .filter(|i| (1..=MAX_SCRAM_ITERATIONS).contains(i))
        .ok_or_else(|| {
            protocol(format!(
                "the server asks for {iterations:?} SCRAM iterations; sendbox computes 1 to {MAX_SCRAM_ITERATIONS}"
            ))
        })?;

    let mut salted_password = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted_password);
    let client_key = hmac_sha256(&salted_password, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    // "biws" is base64 of the gs2 header "n,,".
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(client_signature)
        .map(|(key, signature)| key ^ signature)
        .collect();
    let server_key = hmac_sha256(&salted_password, b"Server Key");
    let mut server_signature =
        HmacSha256::new_from_slice(&server_key).expect("HMAC takes keys of any length");
    server_signature.update(auth_message.as_bytes());
    let client_final = format!("{without_proof},p={}", BASE64.encode(proof));
    Ok((BASE64.encode(client_final), server_signature))
}

/// Checks server-final: `v=` must carry the ServerSignature, compared in constant time.
fn scram_verify(server_signature: HmacSha256, server_final: &[u8]) -> Result<(), Error> {
    let server_final = String::from_utf8_lossy(server_final);
    let first = server_final
        .split_once(',')
        .map_or(&*server_final, |(first, _)| first);
    if let Some(reason) = first.strip_prefix("e=") {
        return Err(Error::new(
            Phase::Auth,
            ErrorKind::Auth,
            format!(
                "the server refused the SCRAM-SHA-256 login: {}",
                printable(reason)
            ),
        ));
    }
    let verifier = first
        .strip_prefix("v=")
        .and_then(|v| BASE64_IN.decode(v).ok())
        .ok_or_else(|| protocol("the SCRAM server-final message has no v= verifier"))?;
    server_signature.verify_slice(&verifier).map_err(|_| {
        Error::new(
            Phase::Auth,
            ErrorKind::Auth,
            "the server did not prove it knows the password (wrong SCRAM server signature)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(user: &str, password: &str) -> Credentials {
        Credentials {
            username: user.into(),
            secret: Secret::Password(password.into()),
            mechanism: None,
        }
    }

    fn token(user: &str, token: &str) -> Credentials {
        Credentials {
            username: user.into(),
            secret: Secret::BearerToken(token.into()),
            mechanism: None,
        }
    }

    fn named(mut credentials: Credentials, mechanism: Mechanism) -> Credentials {
        credentials.mechanism = Some(mechanism);
        credentials
    }

    fn b64(raw: &str) -> String {
        BASE64.encode(raw)
    }

    fn unb64(line: &str) -> String {
        String::from_utf8(BASE64.decode(line).expect("base64")).expect("UTF-8")
    }

    fn line(response: Response) -> String {
        match response {
            Response::Line(line) => line,
            Response::Cancel(error) => panic!("cancelled: {error}"),
        }
    }

    fn cancel(response: Response) -> Error {
        match response {
            Response::Cancel(error) => error,
            Response::Line(line) => panic!("sent {line:?} instead of cancelling"),
        }
    }

    fn start(mechanism: Mechanism, credentials: &Credentials) -> (Exchange, Option<String>) {
        Exchange::start(mechanism, credentials, "server.example.com", 587, "nonce").expect("start")
    }

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    // RFC 7677 section 3.
    const SCRAM_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn scram_start() -> Exchange {
        let (exchange, initial) = Exchange::start(
            Mechanism::ScramSha256,
            &password("user", "pencil"),
            "",
            0,
            SCRAM_NONCE,
        )
        .expect("start");
        assert_eq!(
            unb64(&initial.expect("SCRAM has an initial response")),
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        exchange
    }

    #[test]
    fn scram_sha_256_matches_rfc_7677_example() {
        let mut exchange = scram_start();
        let client_final = line(exchange.challenge(&b64(SERVER_FIRST)));
        assert_eq!(unb64(&client_final), CLIENT_FINAL);
        assert_eq!(line(exchange.challenge(&b64(SERVER_FINAL))), "");
        assert_eq!(exchange.success(), Ok(()));
    }

    #[test]
    fn scram_refuses_a_wrong_server_signature() {
        let mut exchange = scram_start();
        line(exchange.challenge(&b64(SERVER_FIRST)));
        let forged = SERVER_FINAL.replace("6rri", "6rrj");
        let error = cancel(exchange.challenge(&b64(&forged)));
        assert_eq!(error.kind, ErrorKind::Auth);
        assert!(error.message.contains("did not prove"), "{}", error.message);
        assert_eq!(exchange.success().unwrap_err().kind, ErrorKind::Auth);
    }

    #[test]
    fn scram_reports_the_servers_e_value() {
        let mut exchange = scram_start();
        line(exchange.challenge(&b64(SERVER_FIRST)));
        let error = cancel(exchange.challenge(&b64("e=invalid-proof")));
        assert_eq!(error.kind, ErrorKind::Auth);
        assert!(
            error.message.ends_with(": invalid-proof"),
            "{}",
            error.message
        );
    }

    #[test]
    fn scram_235_without_server_final_is_refused() {
        let exchange = scram_start();
        assert_eq!(exchange.success().unwrap_err().kind, ErrorKind::Auth);
        let mut exchange = scram_start();
        line(exchange.challenge(&b64(SERVER_FIRST)));
        let error = exchange.success().unwrap_err();
        assert_eq!(error.kind, ErrorKind::Auth);
        assert!(
            error.message.contains("without proving"),
            "{}",
            error.message
        );
    }

    #[test]
    fn scram_refuses_a_nonce_that_does_not_extend_ours() {
        for nonce in ["rOprNGfwEbeRWgbNEkqX%hvYD", SCRAM_NONCE, "hvYD"] {
            let mut exchange = scram_start();
            let server_first =
                SERVER_FIRST.replace("rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", nonce);
            let error = cancel(exchange.challenge(&b64(&server_first)));
            assert_eq!(error.kind, ErrorKind::Protocol, "{nonce}");
            assert!(error.message.contains("nonce"), "{}", error.message);
        }
    }

    #[test]
    fn scram_bounds_the_iteration_count() {
        for (count, accepted) in [("0", false), ("1", true), ("1000001", false), ("x", false)] {
            let mut exchange = scram_start();
            let server_first = SERVER_FIRST.replace("i=4096", &format!("i={count}"));
            match exchange.challenge(&b64(&server_first)) {
                Response::Line(_) => assert!(accepted, "i={count} was accepted"),
                Response::Cancel(error) => {
                    assert!(!accepted, "i={count} was refused: {error}");
                    assert_eq!(error.kind, ErrorKind::Protocol);
                }
            }
        }
    }

    #[test]
    fn scram_refuses_malformed_server_first_and_extra_challenges() {
        let mut exchange = scram_start();
        let mandatory = format!("m=ext,{SERVER_FIRST}");
        assert_eq!(
            cancel(exchange.challenge(&b64(&mandatory))).kind,
            ErrorKind::Protocol
        );
        let mut exchange = scram_start();
        line(exchange.challenge(&b64(SERVER_FIRST)));
        line(exchange.challenge(&b64(SERVER_FINAL)));
        let error = cancel(exchange.challenge(""));
        assert_eq!(error.kind, ErrorKind::Protocol);
        assert!(error.message.contains("too many"), "{}", error.message);
        // Cancelled after verification: a 235 now must not count.
        assert!(exchange.success().is_err());
    }

    #[test]
    fn scram_prepares_and_escapes_the_user_name_and_password() {
        // U+00A0 (no-break space) maps to a space; U+00AD (soft hyphen) to nothing.
        let credentials = password("a=b,c\u{00AD}", "pen\u{00A0}cil");
        let (exchange, initial) =
            Exchange::start(Mechanism::ScramSha256, &credentials, "", 0, "abc").unwrap();
        assert_eq!(unb64(&initial.unwrap()), "n,,n=a=3Db=2Cc,r=abc");
        let Step::ScramServerFirst { password, .. } = &exchange.step else {
            panic!("unexpected step {:?}", exchange.step.name());
        };
        assert_eq!(password, "pen cil");
    }

    #[test]
    fn scram_refuses_a_bad_client_nonce() {
        for nonce in ["", "a,b", "a b", "caf\u{e9}"] {
            let error = Exchange::start(Mechanism::ScramSha256, &password("u", "p"), "", 0, nonce)
                .unwrap_err();
            assert_eq!(error.kind, ErrorKind::InvalidInput, "{nonce:?}");
        }
    }

    #[test]
    fn nonce_is_base64_of_the_random_bytes() {
        assert_eq!(nonce_from_random(&[0xfb, 0xff]), "+/8=");
        let nonce = nonce_from_random(&[0xfb; 18]);
        assert_eq!(nonce, "+/v7+/v7+/v7+/v7+/v7+/v7");
        assert!(
            Exchange::start(Mechanism::ScramSha256, &password("u", "p"), "", 0, &nonce).is_ok()
        );
    }

    #[test]
    fn cram_md5_matches_rfc_2195_example() {
        let credentials = password("tim", "tanstaaftanstaaf");
        let (mut exchange, initial) = start(Mechanism::CramMd5, &credentials);
        assert_eq!(initial, None);
        let response =
            line(exchange.challenge("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"));
        assert_eq!(response, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
        assert_eq!(unb64(&response), "tim b913a602c7eda7a495b4e6e7334d3890");
        assert_eq!(exchange.success(), Ok(()));
        assert_eq!(cancel(exchange.challenge("")).kind, ErrorKind::Protocol);
    }

    #[test]
    fn a_challenge_that_is_not_base64_cancels() {
        let (mut exchange, _) = start(Mechanism::CramMd5, &password("tim", "x"));
        let error = cancel(exchange.challenge("<1896.697170952@postoffice>"));
        assert_eq!(error.kind, ErrorKind::Protocol);
    }

    #[test]
    fn plain_matches_rfc_4616_example() {
        let credentials = password("tim", "tanstaaftanstaaf");
        let (mut exchange, initial) = start(Mechanism::Plain, &credentials);
        assert_eq!(initial.as_deref(), Some("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"));
        assert_eq!(cancel(exchange.challenge("")).kind, ErrorKind::Protocol);
    }

    #[test]
    fn login_answers_prompts_by_order() {
        let credentials = password("tim", "tanstaaftanstaaf");
        let (mut exchange, initial) = start(Mechanism::Login, &credentials);
        assert_eq!(initial, None);
        // Swapped prompts on purpose: only the order counts.
        assert_eq!(line(exchange.challenge("UGFzc3dvcmQ6")), "dGlt");
        let second = line(exchange.challenge("Username:"));
        assert_eq!(unb64(&second), "tanstaaftanstaaf");
        assert_eq!(cancel(exchange.challenge("")).kind, ErrorKind::Protocol);
    }

    #[test]
    fn oauthbearer_matches_rfc_7628_example() {
        let credentials = token(
            "user@example.com",
            "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==",
        );
        let (_, initial) = Exchange::start(
            Mechanism::OAuthBearer,
            &credentials,
            "server.example.com",
            143,
            "",
        )
        .unwrap();
        // RFC 7628 section 4.1, the IMAP example.
        assert_eq!(
            initial.as_deref(),
            Some(concat!(
                "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9",
                "QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2c9PQEB"
            ))
        );
        let credentials = token("user@example.com", "TOKEN");
        let (_, initial) = start(Mechanism::OAuthBearer, &credentials);
        assert_eq!(
            unb64(&initial.unwrap()),
            "n,a=user@example.com,\x01host=server.example.com\x01port=587\x01auth=Bearer TOKEN\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_keeps_the_servers_error_and_answers_0x01() {
        let credentials = token("user@example.com", "TOKEN");
        let (mut exchange, _) = start(Mechanism::OAuthBearer, &credentials);
        assert_eq!(exchange.server_error(), None);
        // RFC 7628 section 3.2.2's example error, pretty-printed by the server.
        let report = "{\n\"status\":\"invalid_token\",\n\"scope\":\"example_scope\"}";
        assert_eq!(line(exchange.challenge(&b64(report))), "AQ==");
        assert_eq!(
            exchange.server_error(),
            Some("{ \"status\":\"invalid_token\", \"scope\":\"example_scope\"}")
        );
        // The 0x01 carries nothing secret; only the initial response is listed.
        assert_eq!(
            cancel(exchange.challenge(&b64(report))).kind,
            ErrorKind::Protocol
        );
        assert_eq!(exchange.success(), Ok(()));
    }

    #[test]
    fn oauthbearer_escapes_the_authzid() {
        let (_, initial) = start(Mechanism::OAuthBearer, &token("a,b=c", "t"));
        assert!(unb64(&initial.unwrap()).starts_with("n,a=a=2Cb=3Dc,\x01"));
        let error = Exchange::start(Mechanism::OAuthBearer, &token("u", "t"), "h\x01", 587, "")
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidInput);
    }

    #[test]
    fn xoauth2_matches_googles_example() {
        let credentials = token(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        );
        let (mut exchange, initial) = start(Mechanism::XOAuth2, &credentials);
        let initial = initial.unwrap();
        assert_eq!(
            initial,
            concat!(
                "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52Yj",
                "NSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
            )
        );
        assert_eq!(
            unb64(&initial),
            "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        let report = r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        assert_eq!(line(exchange.challenge(&b64(report))), "");
        assert_eq!(exchange.server_error(), Some(report));
    }

    #[test]
    fn choose_prefers_the_strongest_for_a_password() {
        let credentials = password("tim", "pw");
        let all = offered(&["LOGIN", "plain", "CRAM-MD5", "scram-sha-256", "XOAUTH2"]);
        assert_eq!(
            Mechanism::choose(&credentials, &all),
            Ok(Mechanism::ScramSha256)
        );
        let some = offered(&["LOGIN", "CRAM-MD5", "PLAIN"]);
        assert_eq!(Mechanism::choose(&credentials, &some), Ok(Mechanism::Plain));
        let login = offered(&["CRAM-MD5", "LOGIN"]);
        assert_eq!(
            Mechanism::choose(&credentials, &login),
            Ok(Mechanism::Login)
        );
    }

    #[test]
    fn choose_takes_cram_md5_only_by_name() {
        let cram = offered(&["CRAM-MD5", "OAUTHBEARER"]);
        assert_eq!(
            Mechanism::choose(&password("tim", "pw"), &cram),
            Err("the server offers AUTH CRAM-MD5 OAUTHBEARER but sendbox can use SCRAM-SHA-256, PLAIN or LOGIN with a password".to_owned())
        );
        let credentials = named(password("tim", "pw"), Mechanism::CramMd5);
        let both = offered(&["SCRAM-SHA-256", "cram-md5"]);
        assert_eq!(
            Mechanism::choose(&credentials, &both),
            Ok(Mechanism::CramMd5)
        );
    }

    #[test]
    fn choose_never_replaces_a_named_mechanism() {
        let credentials = named(password("tim", "pw"), Mechanism::Login);
        let offer = offered(&["SCRAM-SHA-256", "PLAIN"]);
        assert_eq!(
            Mechanism::choose(&credentials, &offer),
            Err("the server offers AUTH SCRAM-SHA-256 PLAIN but not LOGIN, which the credentials name".to_owned())
        );
        let credentials = named(token("tim", "t"), Mechanism::Plain);
        assert_eq!(
            Mechanism::choose(&credentials, &offer),
            Err("PLAIN needs a password, not a bearer token".to_owned())
        );
    }

    #[test]
    fn choose_prefers_oauthbearer_for_a_token() {
        let credentials = token("tim", "t");
        let both = offered(&["XOAUTH2", "PLAIN", "oauthbearer"]);
        assert_eq!(
            Mechanism::choose(&credentials, &both),
            Ok(Mechanism::OAuthBearer)
        );
        let google = offered(&["XOAUTH2", "PLAIN"]);
        assert_eq!(
            Mechanism::choose(&credentials, &google),
            Ok(Mechanism::XOAuth2)
        );
        let passwords = offered(&["PLAIN", "LOGIN"]);
        assert_eq!(
            Mechanism::choose(&credentials, &passwords),
            Err("the server offers AUTH PLAIN LOGIN but sendbox can use OAUTHBEARER or XOAUTH2 with a bearer token".to_owned())
        );
    }

    #[test]
    fn choose_says_when_the_server_offers_no_auth() {
        assert_eq!(
            Mechanism::choose(&password("tim", "pw"), &[]),
            Err("the server offers no AUTH".to_owned())
        );
    }

    #[test]
    fn choose_skips_scram_when_saslprep_refuses_the_password() {
        let credentials = password("tim", "bell\u{7}");
        let both = offered(&["SCRAM-SHA-256", "PLAIN"]);
        assert_eq!(Mechanism::choose(&credentials, &both), Ok(Mechanism::Plain));
        let scram = offered(&["SCRAM-SHA-256"]);
        assert_eq!(
            Mechanism::choose(&credentials, &scram),
            Err("the server offers AUTH SCRAM-SHA-256 but sendbox can use PLAIN or LOGIN with a password; SCRAM-SHA-256 cannot take this user name or password (SASLprep, RFC 4013)".to_owned())
        );
    }

    #[test]
    fn check_refuses_what_cannot_be_encoded() {
        let refused = [
            password("", "pw"),
            password("a\0b", "pw"),
            password("tim", "p\0w"),
            token("tim\x01", "t"),
            token("tim", "t\x01"),
            named(password("tim", "pw"), Mechanism::OAuthBearer),
            named(token("tim", "t"), Mechanism::ScramSha256),
            named(password("tim", "bell\u{7}"), Mechanism::ScramSha256),
            named(password("\u{7}", "pw"), Mechanism::ScramSha256),
        ];
        for credentials in refused {
            let error = credentials.check().unwrap_err();
            assert_eq!(error.kind, ErrorKind::InvalidInput, "{credentials:?}");
            assert_eq!(error.phase, Phase::Auth);
            // Nor can they start an exchange.
            assert!(Exchange::start(Mechanism::Plain, &credentials, "h", 1, "n").is_err());
        }
        assert_eq!(password("tim", "p\x01w").check(), Ok(()));
        assert_eq!(
            named(password("tim", "bell\u{7}"), Mechanism::Plain).check(),
            Ok(())
        );
        assert_eq!(named(token("tim", "t"), Mechanism::XOAuth2).check(), Ok(()));
    }

    #[test]
    fn saslprep_errors_do_not_show_the_password() {
        let credentials = named(password("tim", "\u{E000}"), Mechanism::ScramSha256);
        let error = credentials.check().unwrap_err();
        assert!(error.message.contains("password"), "{}", error.message);
        assert!(!error.message.contains('\u{E000}'), "{}", error.message);
    }

    #[test]
    fn start_refuses_a_mechanism_for_the_other_kind_of_secret() {
        let error =
            Exchange::start(Mechanism::XOAuth2, &password("tim", "pw"), "h", 1, "n").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidInput);
        assert_eq!(
            error.message,
            "XOAUTH2 needs a bearer token, not a password"
        );
    }

    #[test]
    fn secret_text_is_the_password_or_token() {
        assert_eq!(password("tim", "pw").secret_text(), "pw");
        assert_eq!(token("tim", "tok").secret_text(), "tok");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = "tanstaaftanstaaf";
        let encoded = b64(secret);
        for credentials in [password("tim", secret), token("tim", secret)] {
            let shown = format!("{credentials:?}");
            assert!(shown.contains("tim"), "{shown}");
            assert!(!shown.contains(secret), "{shown}");
        }
        let credentials = password("tim", secret);
        let mut exchanges = Vec::new();
        for mechanism in [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5] {
            exchanges.push(start(mechanism, &credentials).0);
        }
        let mut login = start(Mechanism::Login, &credentials).0;
        login.challenge("");
        exchanges.push(login);
        let (mut scram, _) =
            Exchange::start(Mechanism::ScramSha256, &credentials, "", 0, SCRAM_NONCE).unwrap();
        scram.challenge(&b64(SERVER_FIRST));
        exchanges.push(scram);
        exchanges.push(start(Mechanism::XOAuth2, &token("tim", secret)).0);
        for exchange in exchanges {
            let shown = format!("{exchange:?}");
            assert!(shown.contains("mechanism"), "{shown}");
            assert!(
                !shown.contains(secret) && !shown.contains(&encoded),
                "{shown}"
            );
        }
        let shown = format!("{:?}", Response::Line(encoded.clone()));
        assert!(!shown.contains(&encoded), "{shown}");
    }
}
