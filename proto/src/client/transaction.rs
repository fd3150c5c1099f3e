//! One message: MAIL, RCPT (pipelined when the server allows), DATA or BDAT, and the
//! further transactions a recipient limit (452) calls for.

use super::*;

/// The largest piece of content encoded at once: a BDAT chunk, or a piece of DATA
/// content. Big enough to cost few round trips and writes, small enough that each write
/// fits the data-block timer on a slow link, and that a large message is never held twice.
pub(super) const CONTENT_PIECE: usize = 1 << 20;

/// One message, which may take several SMTP transactions when the server limits the
/// recipients per transaction (RFC 5321 section 4.5.3.1.10).
#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) mail: String,
    pub(super) options: SendOptions,
    /// The recipients of the current SMTP transaction.
    pub(super) recipients: Vec<String>,
    /// The message as the caller gave it: shared, not copied, and encoded a piece at a time.
    pub(super) content: Arc<Vec<u8>>,
    /// Its octets on the wire ([`data::survey`]).
    pub(super) wire_len: u64,
    pub(super) framing: Framing,
    /// How far the current transaction's content has been encoded.
    pub(super) encoder: Encoder,
    /// DATA was answered 354: [`Client::poll`] sends the content, a piece at a time.
    pub(super) streaming: bool,
    pub(super) accepted: Vec<String>,
    /// Where the current transaction's entries in `accepted` begin.
    pub(super) accepted_before: usize,
    pub(super) refused: Vec<RefusedRecipient>,
    /// Recipients answered 452 in the current transaction: for the next one.
    pub(super) deferred: Vec<RefusedRecipient>,
    /// End-of-content replies of earlier transactions, which delivered the message.
    pub(super) earlier_replies: Vec<Reply>,
    /// MAIL and every RCPT went out in one flight (RFC 2920), and DATA with them.
    pub(super) pipelined: bool,
    /// With pipelining, a failure found while replies to commands already sent are
    /// still to come: they are read, then the transaction ends with this error.
    pub(super) doomed: Option<Error>,
}

impl Transaction {
    /// DATA was sent in the same flight as the envelope.
    pub(super) fn data_sent_ahead(&self) -> bool {
        self.pipelined && self.framing == Framing::DotStuffed
    }

    /// How the message ends when the current transaction fails with `error`: if an
    /// earlier one delivered it, a delivery whose refusals include this transaction's
    /// recipients; otherwise the error.
    pub(super) fn outcome_of_failure(mut self, error: Error) -> Result<Delivery, Error> {
        let Some(last) = self.earlier_replies.pop() else {
            return Err(error);
        };
        // Without a reply (the connection was lost) the refusal says so, as a 421 would.
        let reply = error.reply.clone().unwrap_or_else(|| Reply {
            code: 421,
            enhanced: Some(EnhancedStatus {
                class: 4,
                subject: 4,
                detail: 2,
            }),
            lines: vec![format!("no reply: {}", error.message)],
        });
        let failed = self.accepted.split_off(self.accepted_before);
        let unanswered = self
            .recipients
            .iter()
            .filter(|r| !self.refused.iter().any(|f| &f.address == *r))
            .filter(|r| !self.deferred.iter().any(|d| &d.address == *r))
            .filter(|r| !failed.contains(r));
        let refused_now: Vec<RefusedRecipient> = failed
            .iter()
            .chain(unanswered)
            .map(|address| RefusedRecipient {
                address: address.clone(),
                reply: reply.clone(),
            })
            .collect();
        self.refused.extend(refused_now);
        self.refused.append(&mut self.deferred);
        Ok(Delivery {
            accepted: self.accepted,
            refused: self.refused,
            reply: last,
            earlier_replies: self.earlier_replies,
        })
    }
}

/// How much longer than [`MAX_COMMAND_LINE`] an RCPT line with DSN parameters may be.
pub(super) const DSN_RCPT_EXTRA: usize = 500;

/// The error when no recipient was accepted; transient only if every refusal was (552
/// counting as temporary, RFC 5321 section 4.5.3.1.10). The error's reply is the last
/// refusal; the message names every refused address.
pub(super) fn every_recipient_refused(refused: &[RefusedRecipient]) -> Error {
    let last = refused
        .last()
        .expect("at least one recipient")
        .reply
        .clone();
    let message = match refused {
        [only] => format!("the recipient <{}> was refused", only.address),
        _ => {
            let each: Vec<String> = refused
                .iter()
                .map(|r| format!("<{}>: {}", r.address, r.reply))
                .collect();
            format!("every recipient was refused ({})", each.join("; "))
        }
    };
    let mut error = Error::from_reply(Phase::Rcpt, ErrorKind::Rejected, message, last);
    error.transient = refused
        .iter()
        .all(|r| too_many_recipients(&r.reply) || r.reply.is_transient());
    error
}

/// 452, or 552 which RFC 5321 section 4.5.3.1.10 says to treat the same way at RCPT: the
/// server takes no more recipients in this transaction, and a later one may.
pub(super) fn too_many_recipients(reply: &Reply) -> bool {
    matches!(reply.code, 452 | 552)
}

impl Ready<'_> {
    /// Starts sending a message, in a call that began at `call_start` (for a call that
    /// also opened the session, when it began opening): the call's time limit runs from
    /// there, and a connection idle for more than [`IDLE_CHECK_MS`] before it is checked
    /// with NOOP first. Bad input, and what the server is known not to support, is refused
    /// here, before anything is sent, and the session stays ready.
    pub fn send(
        self,
        call_start: Instant,
        envelope: Envelope,
        message: impl Into<Arc<Vec<u8>>>,
        options: SendOptions,
    ) -> Result<(), Error> {
        let client = self.client;
        client.prepare_transaction(envelope, message.into(), options)?;
        client.call_deadline = call_start.plus_ms(client.config.timeouts.total_ms);
        if call_start.ms_since(client.last_reply) > u64::from(IDLE_CHECK_MS) {
            client.command("NOOP");
            client.state = State::IdleCheck;
        } else {
            client.start_transaction();
        }
        Ok(())
    }
}

impl Client {
    /// Checks a message against the input rules and what the server offers, and holds it
    /// as the transaction to run.
    fn prepare_transaction(
        &mut self,
        envelope: Envelope,
        message: Arc<Vec<u8>>,
        options: SendOptions,
    ) -> Result<(), Error> {
        let needs_utf8 = envelope.check()?;
        options.check()?;
        if needs_utf8 && !self.capabilities.has(Extension::SmtpUtf8) {
            return Err(Error::invalid_input(
                Phase::Mail,
                "an address has non-ASCII characters but the server does not offer SMTPUTF8",
            ));
        }
        if options.dsn.is_some() && !self.capabilities.has(Extension::Dsn) {
            return Err(Error::invalid_input(
                Phase::Mail,
                "delivery status notifications were asked for but the server does not offer DSN",
            ));
        }
        if options.require_tls && !(self.tls_active && self.capabilities.has(Extension::RequireTls))
        {
            return Err(Error::new(
                Phase::Mail,
                ErrorKind::Tls,
                "REQUIRETLS was asked for but the connection is not TLS or the server does not \
                 offer REQUIRETLS; the message was not sent",
            ));
        }
        let framing = if self.capabilities.has(Extension::Chunking) {
            Framing::Chunked
        } else {
            Framing::DotStuffed
        };
        let data = data::survey(&message, framing)?;
        let eight_bit_mime = self.capabilities.has(Extension::EightBitMime);
        if data.eight_bit && !eight_bit_mime && !needs_utf8 {
            return Err(Error::invalid_input(
                Phase::Data,
                "the message has 8-bit content but the server does not offer 8BITMIME; \
                 compose the message (which encodes it to 7-bit) or encode it first",
            ));
        }
        // RFC 1870 counts CRLFs but not the stuffed dots; the wire length may only overstate it.
        let size = data.wire_len;
        if let Some(limit) = self.capabilities.size_limit()
            && size > limit
        {
            return Err(Error::invalid_input(
                Phase::Mail,
                format!("the message is {size} bytes but the server accepts at most {limit}"),
            ));
        }
        let declared = MailDeclarations {
            size: self.capabilities.has(Extension::Size).then_some(size),
            eight_bit: data.eight_bit && eight_bit_mime,
            smtputf8: needs_utf8,
        };
        let mail = params::mail_command(&envelope.sender, declared, &options);
        if mail.len() + 2 > MAX_COMMAND_LINE {
            return Err(Error::invalid_input(
                Phase::Mail,
                "the MAIL command would be too long",
            ));
        }
        // RFC 3461 section 4 lets NOTIFY and ORCPT lengthen an RCPT line by 500 octets.
        let dsn_extra = options
            .dsn
            .as_ref()
            .is_some_and(|d| d.notify.is_some() || d.original_recipients);
        let rcpt_limit = MAX_COMMAND_LINE + if dsn_extra { DSN_RCPT_EXTRA } else { 0 };
        for recipient in &envelope.recipients {
            if params::rcpt_command(recipient, &options).len() + 2 > rcpt_limit {
                return Err(Error::invalid_input(
                    Phase::Rcpt,
                    format!(
                        "the RCPT command for <{recipient}> would be longer than \
                         {rcpt_limit} octets"
                    ),
                ));
            }
        }
        self.transaction = Some(Transaction {
            mail,
            options,
            recipients: envelope.recipients,
            content: message,
            wire_len: data.wire_len,
            framing,
            encoder: Encoder::new(framing),
            streaming: false,
            accepted: Vec::new(),
            accepted_before: 0,
            refused: Vec::new(),
            deferred: Vec::new(),
            earlier_replies: Vec::new(),
            pipelined: self.capabilities.has(Extension::Pipelining),
            doomed: None,
        });
        Ok(())
    }

    /// MAIL FROM for the transaction's current recipients; with pipelining every RCPT
    /// too, and DATA when the content goes after a 354 (RFC 2920).
    pub(super) fn start_transaction(&mut self) {
        let transaction = self.in_transaction();
        transaction.accepted_before = transaction.accepted.len();
        let mail = transaction.mail.clone();
        self.command(&mail);
        self.state = State::Mail;
        let transaction = self.in_transaction();
        if transaction.pipelined {
            let data_ahead = transaction.data_sent_ahead();
            for index in 0..transaction.recipients.len() {
                self.rcpt_command(index);
            }
            if data_ahead {
                self.command("DATA");
            }
        }
    }

    pub(super) fn on_mail(&mut self, reply: Reply) {
        if reply.is_positive() {
            return self.next_rcpt(0);
        }
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                Phase::Mail,
                ErrorKind::Protocol,
                "unexpected reply to MAIL",
                reply,
            ));
        }
        let error = Error::from_reply(
            Phase::Mail,
            ErrorKind::Rejected,
            "the sender was refused",
            reply,
        );
        if self.in_transaction().pipelined {
            // The replies to RCPT (and DATA) are on their way; read them first.
            self.in_transaction().doomed = Some(error);
            self.state = State::Rcpt { index: 0 };
        } else {
            self.reset_then_fail(error);
        }
    }

    pub(super) fn on_rcpt(&mut self, reply: Reply, index: usize) {
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                Phase::Rcpt,
                ErrorKind::Protocol,
                "unexpected reply to RCPT",
                reply,
            ));
        }
        let transaction = self.in_transaction();
        if transaction.doomed.is_none() {
            let address = transaction.recipients[index].clone();
            if reply.is_positive() {
                transaction.accepted.push(address);
            } else if too_many_recipients(&reply) {
                // Too many recipients: the rest go in a further transaction (RFC 5321
                // section 4.5.3.1.10), if this one delivers to anyone.
                transaction
                    .deferred
                    .push(RefusedRecipient { address, reply });
            } else {
                transaction
                    .refused
                    .push(RefusedRecipient { address, reply });
            }
        }
        if index + 1 < transaction.recipients.len() {
            return self.next_rcpt(index + 1);
        }
        if transaction.doomed.is_none() && transaction.accepted.len() == transaction.accepted_before
        {
            // Nobody took it in this transaction, so a further one would fare no better.
            let deferred = mem::take(&mut transaction.deferred);
            transaction.refused.extend(deferred);
            let round: Vec<RefusedRecipient> = transaction
                .refused
                .iter()
                .filter(|r| transaction.recipients.contains(&r.address))
                .cloned()
                .collect();
            transaction.doomed = Some(every_recipient_refused(&round));
        }
        match (transaction.data_sent_ahead(), transaction.doomed.take()) {
            (false, Some(error)) => self.reset_then_fail(error),
            (false, None) if transaction.framing == Framing::Chunked => self.send_chunk(),
            (false, None) => {
                self.command("DATA");
                self.state = State::Data;
            }
            (true, doomed) => {
                // DATA was sent with the envelope; its reply comes next.
                self.in_transaction().doomed = doomed;
                self.state = State::Data;
            }
        }
    }

    pub(super) fn on_data(&mut self, reply: Reply) {
        if let Some(error) = self.in_transaction().doomed.take() {
            if reply.code == 354 {
                // RFC 2920 section 3.1: the server accepted a DATA we sent ahead; end it
                // with an empty message, which it refuses for want of recipients.
                self.record("C: <empty message: the transaction already failed>".to_owned());
                self.out.extend_from_slice(b".\r\n");
                self.in_transaction().doomed = Some(error);
                self.state = State::DataEnd;
            } else {
                self.reset_then_fail(error);
            }
            return;
        }
        if reply.code == 354 {
            let size = self.in_transaction().wire_len;
            self.record(format!("C: <message: {size} bytes>"));
            self.in_transaction().streaming = true;
            self.state = State::DataEnd;
        } else if reply.code / 100 >= 4 {
            self.reject_transaction(Phase::Data, "DATA was refused", reply);
        } else {
            let error = Error::from_reply(
                Phase::Data,
                ErrorKind::Protocol,
                "the server answered DATA without 354; no content was sent",
                reply,
            );
            self.fail(error);
        }
    }

    /// Sends the next BDAT chunk (RFC 3030); the last one says LAST.
    pub(super) fn send_chunk(&mut self) {
        let transaction = self.transaction.as_mut().expect("BDAT is in a transaction");
        let mut chunk = Vec::with_capacity(CONTENT_PIECE);
        transaction
            .encoder
            .encode_into(&transaction.content, &mut chunk, CONTENT_PIECE);
        let last = transaction.encoder.finished();
        let size = chunk.len();
        let line = if last {
            format!("BDAT {size} LAST")
        } else {
            format!("BDAT {size}")
        };
        self.command(&line);
        self.record(format!("C: <message: {size} bytes>"));
        self.out.extend_from_slice(&chunk);
        self.out_is_content = true;
        self.state = State::Bdat { last };
    }

    pub(super) fn on_bdat_chunk(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.send_chunk();
        } else {
            self.reject_transaction(Phase::Data, "a BDAT chunk was refused", reply);
        }
    }

    /// The reply to the end of the content: the final dot, or BDAT LAST.
    pub(super) fn on_content_end(&mut self, reply: Reply) {
        let mut transaction = self.transaction.take().expect("data ends a transaction");
        self.state = State::Ready;
        if let Some(error) = transaction.doomed.take() {
            // The reply is to the empty message that closed a failed pipelined transaction.
            if reply.is_intermediate() {
                return self.fail(error);
            }
            let outcome = transaction.outcome_of_failure(error);
            self.outcomes.push_back(Outcome::Done(outcome));
        } else if reply.is_positive() {
            if transaction.deferred.is_empty() {
                self.outcomes.push_back(Outcome::Done(Ok(Delivery {
                    accepted: transaction.accepted,
                    refused: transaction.refused,
                    reply,
                    earlier_replies: transaction.earlier_replies,
                })));
            } else {
                transaction.earlier_replies.push(reply);
                transaction.recipients =
                    transaction.deferred.drain(..).map(|r| r.address).collect();
                transaction.encoder = Encoder::new(transaction.framing);
                transaction.streaming = false;
                self.transaction = Some(transaction);
                self.start_transaction();
            }
        } else if reply.code / 100 >= 4 {
            let error = Error::from_reply(
                Phase::Data,
                ErrorKind::Rejected,
                "the message was refused after its content was sent",
                reply,
            );
            let outcome = transaction.outcome_of_failure(error);
            self.outcomes.push_back(Outcome::Done(outcome));
        } else {
            self.fail(Error::from_reply(
                Phase::Data,
                ErrorKind::Protocol,
                "unexpected reply to the end of the message",
                reply,
            ));
        }
    }

    pub(super) fn on_rset(&mut self, reply: Reply, then: Result<Delivery, Error>) {
        if reply.is_positive() {
            self.state = State::Ready;
            self.outcomes.push_back(Outcome::Done(then));
        } else {
            // The transaction failed and the server will not reset: the session is unusable.
            match then {
                Ok(delivery) => {
                    self.outcomes.push_back(Outcome::Done(Ok(delivery)));
                    self.close_now();
                }
                Err(error) => self.fail(error),
            }
        }
    }

    /// Moves on to the reply for recipient `index`, sending its RCPT unless pipelining
    /// already did.
    pub(super) fn next_rcpt(&mut self, index: usize) {
        if !self.in_transaction().pipelined {
            self.rcpt_command(index);
        }
        self.state = State::Rcpt { index };
    }

    pub(super) fn rcpt_command(&mut self, index: usize) {
        let transaction = self.in_transaction();
        let line = params::rcpt_command(&transaction.recipients[index], &transaction.options);
        self.command(&line);
    }

    pub(super) fn in_transaction(&mut self) -> &mut Transaction {
        self.transaction
            .as_mut()
            .expect("only called during a transaction")
    }

    /// A transaction-level refusal: reset the transaction, keep the session.
    pub(super) fn reject_transaction(&mut self, phase: Phase, message: &str, reply: Reply) {
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                phase,
                ErrorKind::Protocol,
                "unexpected intermediate reply",
                reply,
            ));
        }
        self.reset_then_fail(Error::from_reply(
            phase,
            ErrorKind::Rejected,
            message,
            reply,
        ));
    }

    pub(super) fn reset_then_fail(&mut self, error: Error) {
        let then = match self.transaction.take() {
            Some(transaction) => transaction.outcome_of_failure(error),
            None => Err(error),
        };
        self.command("RSET");
        self.state = State::Rset { then };
    }
}
