//! Tests of `dkim`: the RFCs' own examples, the field as written, hostile messages and
//! requests, and properties of the canonicalisation.

use super::*;

use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    BASE64.decode(text).expect("base64")
}

/// The header fields of `message`, each canonicalised, in message order.
fn canonical_header(message: &[u8], canonicalization: Canonicalization) -> Vec<u8> {
    let header = Header::parse(message).expect("a header");
    let mut out = Vec::new();
    for field in &header.fields {
        canonical_field(
            &message[field.start..field.end],
            field.name_end - field.start,
            field.colon - field.start,
            canonicalization,
            &mut out,
        );
    }
    out
}

/// The canonical body of `message`.
fn canonical_body_of(message: &[u8], canonicalization: Canonicalization) -> Vec<u8> {
    let header = Header::parse(message).expect("a header");
    let mut out = Vec::new();
    canonical_body(
        &message[header.body_start..],
        canonicalization,
        &mut |bytes| out.extend_from_slice(bytes),
    );
    out
}

/// The value of tag `name` in a DKIM-Signature field, folds and whitespace removed.
fn tag(field: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(field);
    let value = text.split_once(':')?.1;
    value.split(';').find_map(|spec| {
        let (tag, value) = spec.split_once('=')?;
        (tag.trim() == name).then(|| value.split_whitespace().collect())
    })
}

/// The names of the tags in a DKIM-Signature field, in order.
fn tag_names(field: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(field);
    let value = text.split_once(':').unwrap().1;
    value
        .split(';')
        .filter_map(|spec| Some(spec.split_once('=')?.0.trim().to_owned()))
        .collect()
}

fn ed25519_request() -> Request {
    Request::new("example.org", "sel", Algorithm::Ed25519Sha256)
}

const SIMPLE_EMPTY_BODY: &str = "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="; // SHA-256 of CRLF
const RELAXED_EMPTY_BODY: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; // SHA-256 of nothing

// RFC 6376 section 3.4.5, the example message, written there as
//   A: <SP> X <CRLF>
//   B <SP> : <SP> Y <HTAB><CRLF>
//   <HTAB> Z <SP><SP><CRLF>
//   <CRLF>
//   <SP> C <SP><CRLF>
//   D <SP><HTAB><SP> E <CRLF>
//   <CRLF>
//   <CRLF>
const RFC6376_EXAMPLE: &[u8] = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";

#[test]
fn rfc6376_example_relaxed() {
    // Example 1: "a:X <CRLF> b:Y <SP> Z <CRLF>" and "<SP> C <CRLF> D <SP> E <CRLF>".
    let relaxed = Canonicalization::Relaxed;
    assert_eq!(
        canonical_header(RFC6376_EXAMPLE, relaxed),
        b"a:X\r\nb:Y Z\r\n"
    );
    assert_eq!(
        canonical_body_of(RFC6376_EXAMPLE, relaxed),
        b" C\r\nD E\r\n"
    );
}

#[test]
fn rfc6376_example_simple() {
    // Example 2: the header as it is, the body without its trailing empty lines.
    let simple = Canonicalization::Simple;
    assert_eq!(
        canonical_header(RFC6376_EXAMPLE, simple),
        b"A: X\r\nB : Y\t\r\n\tZ  \r\n"
    );
    assert_eq!(
        canonical_body_of(RFC6376_EXAMPLE, simple),
        b" C \r\nD \t E\r\n"
    );
}

#[test]
fn rfc6376_example_through_prepare() {
    let mut message = b"From: x@example.org\r\n".to_vec();
    message.extend_from_slice(RFC6376_EXAMPLE);
    for (canonicalization, fields, body) in [
        (
            Canonicalization::Relaxed,
            &b"a:X\r\nb:Y Z\r\nfrom:x@example.org\r\ndkim-signature:v=1; "[..],
            &b" C\r\nD E\r\n"[..],
        ),
        (
            Canonicalization::Simple,
            b"A: X\r\nB : Y\t\r\n\tZ  \r\nFrom: x@example.org\r\nDKIM-Signature: v=1; ",
            b" C \r\nD \t E\r\n",
        ),
    ] {
        let mut request = ed25519_request();
        request.header_canonicalization = canonicalization;
        request.body_canonicalization = canonicalization;
        request.headers = vec!["A".into(), "b".into(), "FROM".into()];
        let prepared = prepare(&request, &message, 1).unwrap();
        assert!(
            prepared.signed_data().starts_with(fields),
            "{canonicalization:?}"
        );
        assert_eq!(
            tag(prepared.field().as_bytes(), "h").unwrap(),
            "a:b:from:from"
        );
        assert_eq!(
            tag(prepared.field().as_bytes(), "bh").unwrap(),
            b64(&Sha256::digest(body))
        );
    }
}

// RFC 8463 Appendix A: the message as signed by both keys, and the key records. The text
// is copied from mox's test of it (github.com/mjl-/mox, dkim/dkim_test.go,
// TestVerifyEd25519, which cites rfc/8463 line 287), with LF made CRLF.
const RFC8463_SIGNATURES: &str = "\
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :
 date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=
";
const RFC8463_MESSAGE: &str = "\
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.

";
const RFC8463_ED25519_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const RFC8463_ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
/// `p=` of test._domainkey.football.example.com: a SubjectPublicKeyInfo.
const RFC8463_RSA_PUBLIC: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
/// RFC 8463 Appendix A.1's RSA key (PKCS#1), the same in the copies the search found
/// (dkimpy's and MimeKit's ARC tests use it too). That it is the RFC's key is checked
/// below against the record above; `openssl dgst -sha256 -sign` with it over the data
/// `rfc8463_rsa_signature_verifies` derives gave the RFC's b= byte for byte.
const RFC8463_RSA_PRIVATE_PEM: &str = "\
MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi
Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM
KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB
AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm
6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe
zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy
6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc
uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy
WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd
WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a
licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst
o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe
uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL";
const RFC8463_BODY_HASH: &str = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";
const RFC8463_TIME: u64 = 1_528_637_909;

fn rfc8463_signed_message() -> Vec<u8> {
    format!("{RFC8463_SIGNATURES}{RFC8463_MESSAGE}")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// The RFC's settings as a [`Request`]: its h= lists From, To, Subject, Date and
/// Message-ID once each, then From, Subject and Date once more.
fn rfc8463_request(algorithm: Algorithm, selector: &str) -> Request {
    let mut request = Request::new("football.example.com", selector, algorithm);
    request.headers = ["From", "To", "Subject", "Date", "Message-ID"]
        .map(String::from)
        .to_vec();
    request.oversign = ["From", "Subject", "Date"].map(String::from).to_vec();
    request.identity = Some("@football.example.com".into());
    request
}

/// The signature fields of the RFC's message, as they are, and what its b= holds.
fn rfc8463_field(index: usize) -> (String, String) {
    let message = rfc8463_signed_message();
    let header = Header::parse(&message).unwrap();
    let field = header.fields[index];
    let text = String::from_utf8(message[field.start..field.end].to_vec()).unwrap();
    let b = tag(text.as_bytes(), "b").unwrap();
    (text, b)
}

/// [`Prepared`] for the RFC's own DKIM-Signature field (our tag order differs from the
/// RFC's, so `prepare` cannot write that field): the field's `b=` value is deleted as a
/// verifier does (RFC 6376 section 3.7), and the rest goes through the code `prepare` uses.
fn rfc8463_prepared(index: usize, algorithm: Algorithm, selector: &str) -> Prepared {
    let (field, _) = rfc8463_field(index);
    let last_tag = field.rfind(';').unwrap();
    let b_at = last_tag + field[last_tag..].find("b=").unwrap();
    let empty_b = field[..b_at + 2].to_owned();
    assert!(empty_b.ends_with("\r\n b="), "{empty_b:?}");
    let message = rfc8463_signed_message();
    let mut header = Header::parse(&message).unwrap();
    let h: Vec<String> = tag(field.as_bytes(), "h")
        .unwrap()
        .split(':')
        .map(str::to_owned)
        .collect();
    assert_eq!(
        h.join(":"),
        "from:to:subject:date:message-id:from:subject:date"
    );
    header.index(&h);
    seal(
        &header,
        &h,
        &rfc8463_request(algorithm, selector),
        empty_b,
        3,
    )
}

/// The canonical fields and the signature field every RFC 8463 signature covers, but for
/// the tags from `a=` to `s=`.
fn rfc8463_expected_data(algorithm_and_selector: &str) -> String {
    format!(
        "from:Joe SixPack <joe@football.example.com>\r\n\
         to:Suzie Q <suzie@shopping.example.net>\r\n\
         subject:Is dinner ready?\r\n\
         date:Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n\
         message-id:<20030712040037.46341.5F8J@football.example.com>\r\n\
         dkim-signature:v=1; {algorithm_and_selector}; t=1528637909; \
         h=from : to : subject : date : message-id : from : subject : date; \
         bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b="
    )
}

#[test]
fn rfc8463_ed25519_signature_is_reproduced_byte_for_byte() {
    let seed = unb64(RFC8463_ED25519_SEED);
    let key = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    assert_eq!(b64(key.public_key().as_ref()), RFC8463_ED25519_PUBLIC);

    let prepared = rfc8463_prepared(0, Algorithm::Ed25519Sha256, "brisbane");
    let expected = rfc8463_expected_data(
        "a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com; \
         i=@football.example.com; q=dns/txt; s=brisbane",
    );
    assert_eq!(
        String::from_utf8_lossy(prepared.signed_data()),
        expected,
        "the selected fields, bottom-up and over-signed, and the field itself"
    );
    // RFC 8463 section 3: PureEdDSA over the SHA-256 digest, not over the data.
    assert_eq!(
        prepared.signing_input(),
        &Sha256::digest(expected.as_bytes())[..]
    );
    let signature = key.sign(prepared.signing_input());
    let (_, rfc_b) = rfc8463_field(0);
    assert_eq!(b64(signature.as_ref()), rfc_b);
    assert_eq!(
        rfc_b,
        "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
    );
    // The same key over the data itself (no digest) does not give the RFC's signature.
    assert_ne!(b64(key.sign(prepared.signed_data()).as_ref()), rfc_b);
}

#[test]
fn rfc8463_rsa_signature_verifies() {
    // ring signs with RSA keys of 2048 bits or more only: the RFC's is 1024.
    let private = unb64(&RFC8463_RSA_PRIVATE_PEM.replace('\n', ""));
    assert!(signature::RsaKeyPair::from_der(&private).is_err());
    // It is the RFC's key: its modulus and exponent are the record's.
    let record = unb64(RFC8463_RSA_PUBLIC);
    let spki_head = [
        0x30, 0x81, 0x9f, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00, 0x03, 0x81, 0x8d, 0x00,
    ];
    assert_eq!(record[..spki_head.len()], spki_head);
    let public = &record[spki_head.len()..]; // RSAPublicKey: SEQUENCE { n, e }
    let n_and_e = &public[3..];
    // RSAPrivateKey: SEQUENCE (4 octets of header), version 0 (3), then n and e.
    assert_eq!(&private[7..7 + n_and_e.len()], n_and_e);

    let prepared = rfc8463_prepared(1, Algorithm::RsaSha256, "test");
    let expected = rfc8463_expected_data(
        "a=rsa-sha256; c=relaxed/relaxed; d=football.example.com; \
         i=@football.example.com; q=dns/txt; s=test",
    );
    assert_eq!(String::from_utf8_lossy(prepared.signed_data()), expected);
    // RSASSA-PKCS1-v1_5 takes the data and hashes it itself.
    assert_eq!(prepared.signing_input(), expected.as_bytes());
    let (_, rfc_b) = rfc8463_field(1);
    let rfc_signature = unb64(&rfc_b);
    // PKCS#1 v1.5 signatures are deterministic: this verification holding means signing
    // the input with the RFC's key gives the RFC's b= exactly.
    let verifier = UnparsedPublicKey::new(
        &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        public,
    );
    verifier
        .verify(prepared.signing_input(), &rfc_signature)
        .expect("the RFC's RSA signature covers exactly our signing input");
    let mut changed = prepared.signing_input().to_vec();
    changed[0] ^= 1;
    assert!(verifier.verify(&changed, &rfc_signature).is_err());
}

#[test]
fn rfc8463_request_gives_the_rfc_body_hash_fields_and_h() {
    let message = RFC8463_MESSAGE.replace('\n', "\r\n");
    for (algorithm, selector, index) in [
        (Algorithm::Ed25519Sha256, "brisbane", 0),
        (Algorithm::RsaSha256, "test", 1),
    ] {
        let request = rfc8463_request(algorithm, selector);
        let prepared = prepare(&request, message.as_bytes(), RFC8463_TIME).unwrap();
        let field = prepared.field().as_bytes();
        assert_eq!(tag(field, "bh").unwrap(), RFC8463_BODY_HASH);
        assert_eq!(
            tag(field, "h").unwrap(),
            "from:to:subject:date:message-id:from:subject:date"
        );
        assert_eq!(tag(field, "t").unwrap(), "1528637909");
        assert_eq!(tag(field, "i").unwrap(), "@football.example.com");
        assert_eq!(tag(field, "a").unwrap(), algorithm.name());
        // The same fields in the same order as the RFC's signature covers.
        let rfc = rfc8463_prepared(index, algorithm, selector);
        let fields_end = |data: &[u8]| {
            let text = String::from_utf8_lossy(data).into_owned();
            text[..text.find("dkim-signature:").unwrap()].to_owned()
        };
        assert_eq!(
            fields_end(prepared.signed_data()),
            fields_end(rfc.signed_data())
        );
        match algorithm {
            Algorithm::RsaSha256 => assert_eq!(prepared.signing_input(), prepared.signed_data()),
            Algorithm::Ed25519Sha256 => assert_eq!(
                prepared.signing_input(),
                &Sha256::digest(prepared.signed_data())[..]
            ),
        }
    }
}

/// A verifier of its own, written apart from the signer with string operations for the
/// CRLF, ASCII messages of these tests: it reads the signed message's first field as the
/// signature, checks bh= and the Ed25519 signature over the fields h= names.
fn verify(signed: &[u8], public_key: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(signed).map_err(|e| e.to_string())?;
    let (head, body) = match text.split_once("\r\n\r\n") {
        Some((head, body)) => (head, body),
        None => (text.trim_end_matches("\r\n"), ""),
    };
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match fields.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push_str("\r\n");
                last.push_str(line);
            }
            _ => fields.push(line.to_owned()),
        }
    }
    let signature = fields.remove(0);
    if !signature.starts_with("DKIM-Signature:") {
        return Err("no signature on top".into());
    }
    let tag = |name: &str| tag(signature.as_bytes(), name).ok_or(format!("no {name}="));
    let (header_c, body_c) = tag("c")?
        .split_once('/')
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .ok_or("c=")?;
    let wsp_runs = |s: &str| {
        let mut out = String::new();
        for (index, word) in s.split([' ', '\t']).filter(|w| !w.is_empty()).enumerate() {
            if index > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
        out
    };
    // The body, by RFC 6376 sections 3.4.3 and 3.4.4.
    let mut lines: Vec<String> = body
        .strip_suffix("\r\n")
        .unwrap_or(body)
        .split("\r\n")
        .map(|line| match body_c.as_str() {
            "relaxed" => {
                let kept = line.trim_end_matches([' ', '\t']);
                let lead = if kept.starts_with([' ', '\t']) {
                    " "
                } else {
                    ""
                };
                format!("{lead}{}", wsp_runs(kept))
            }
            _ => line.to_owned(),
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let mut canonical_body: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    if canonical_body.is_empty() && body_c == "simple" {
        canonical_body.push_str("\r\n");
    }
    if b64(&Sha256::digest(canonical_body.as_bytes())) != tag("bh")? {
        return Err("body hash".into());
    }
    let canonical = |field: &str| match header_c.as_str() {
        "relaxed" => {
            let (name, value) = field.split_once(':').unwrap();
            format!(
                "{}:{}\r\n",
                name.trim_end().to_ascii_lowercase(),
                wsp_runs(&value.replace("\r\n", ""))
            )
        }
        _ => format!("{field}\r\n"),
    };
    let mut data = String::new();
    let mut used = vec![false; fields.len()];
    for name in tag("h")?.split(':') {
        let found = (0..fields.len()).rev().find(|&i| {
            !used[i]
                && fields[i]
                    .split_once(':')
                    .is_some_and(|(n, _)| n.trim_end().eq_ignore_ascii_case(name))
        });
        if let Some(i) = found {
            used[i] = true;
            data.push_str(&canonical(&fields[i]));
        }
    }
    // b= is the last tag: its value goes, with the whitespace in it.
    let cut = signature.rfind(';').ok_or("no ;")?;
    let b_at = cut + signature[cut..].find("b=").ok_or("no b=")? + 2;
    let own = canonical(&signature[..b_at]);
    data.push_str(own.strip_suffix("\r\n").unwrap());
    let digest = Sha256::digest(data.as_bytes());
    UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&digest, &unb64(&tag("b")?))
        .map_err(|_| "signature".to_owned())
}

fn test_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap()
}

/// Signs `message` with the test key as the component would, and returns it signed.
fn sign(request: &Request, message: &[u8]) -> Vec<u8> {
    let prepared = prepare(request, message, 1_700_000_000).unwrap();
    let signature = test_key().sign(prepared.signing_input());
    let mut signed = prepared.finish(signature.as_ref());
    signed.extend_from_slice(message);
    signed
}

const MESSAGE: &str = "From: Alice <alice@example.org>\r\n\
To: Bob <bob@example.net>,\r\n\t Carol <carol@example.net>\r\n\
Subject:   A  folded\r\n   subject\t \r\n\
X-Unsigned: anything\r\n\
Date: Mon, 4 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <1@example.org>\r\n\
\r\n\
Hello  there, \r\n\
\r\n\
bye\r\n\r\n\r\n";

#[test]
fn signed_messages_verify_and_changed_ones_do_not() {
    let public = test_key().public_key().as_ref().to_vec();
    for header_c in [Canonicalization::Simple, Canonicalization::Relaxed] {
        for body_c in [Canonicalization::Simple, Canonicalization::Relaxed] {
            let mut request = ed25519_request();
            request.header_canonicalization = header_c;
            request.body_canonicalization = body_c;
            request.expiry = Some(3600);
            request.identity = Some("alice@mail.example.org".into());
            let signed = sign(&request, MESSAGE.as_bytes());
            let shown = String::from_utf8_lossy(&signed).into_owned();
            assert_eq!(verify(&signed, &public), Ok(()), "{shown}");
            // Negative controls: a header byte, a body byte, a From added, another key.
            let changed = shown.replace("Subject:   A", "Subject:   B");
            assert!(verify(changed.as_bytes(), &public).is_err());
            let changed = shown.replace("bye", "bye!");
            assert_eq!(verify(changed.as_bytes(), &public), Err("body hash".into()));
            let changed = shown.replace(
                "\r\n\r\nHello",
                "\r\nFrom: mallory@example.com\r\n\r\nHello",
            );
            assert!(verify(changed.as_bytes(), &public).is_err());
            let other = Ed25519KeyPair::from_seed_unchecked(&[8; 32]).unwrap();
            assert!(verify(&signed, other.public_key().as_ref()).is_err());
        }
    }
}

#[test]
fn relaxed_signatures_survive_refolding_and_respacing() {
    let public = test_key().public_key().as_ref().to_vec();
    let signed = sign(&ed25519_request(), MESSAGE.as_bytes());
    let shown = String::from_utf8_lossy(&signed).into_owned();
    let respaced = shown
        .replace(
            "Subject:   A  folded\r\n   subject\t ",
            "subject: A folded subject",
        )
        .replace("Hello  there, ", "Hello there,");
    assert_ne!(respaced, shown);
    assert_eq!(verify(respaced.as_bytes(), &public), Ok(()));
}

#[test]
fn the_field_has_its_tags_in_order_and_no_l_or_q() {
    let mut request = ed25519_request();
    request.expiry = Some(86_400);
    request.identity = Some("@example.org".into());
    let prepared = prepare(&request, MESSAGE.as_bytes(), 1_700_000_000).unwrap();
    let field = prepared.finish(&[0xAB; 64]);
    assert!(field.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
    assert!(field.ends_with(b"\r\n"));
    assert_eq!(
        tag_names(&field),
        ["v", "a", "c", "d", "s", "t", "x", "i", "h", "bh", "b"]
    );
    assert_eq!(tag(&field, "t").unwrap(), "1700000000");
    assert_eq!(tag(&field, "x").unwrap(), "1700086400");
    assert_eq!(tag(&field, "b").unwrap(), b64(&[0xAB; 64]));
    // Without expiry and identity, x= and i= are left out.
    let prepared = prepare(&ed25519_request(), MESSAGE.as_bytes(), 5).unwrap();
    assert_eq!(
        tag_names(prepared.field().as_bytes()),
        ["v", "a", "c", "d", "s", "t", "h", "bh", "b"]
    );
    let simple = Request {
        header_canonicalization: Canonicalization::Simple,
        body_canonicalization: Canonicalization::Simple,
        ..Request::new("example.org", "s", Algorithm::RsaSha256)
    };
    let prepared = prepare(&simple, MESSAGE.as_bytes(), 5).unwrap();
    assert_eq!(
        tag(prepared.field().as_bytes(), "c").unwrap(),
        "simple/simple"
    );
    assert_eq!(tag(prepared.field().as_bytes(), "a").unwrap(), "rsa-sha256");
}

#[test]
fn each_present_field_is_signed_per_instance_bottom_up_and_from_once_more() {
    let message = b"From: a@example.org\r\nTo: first@example.net\r\nX-Other: 1\r\n\
                    to: second@example.net\r\nSubject: hi\r\nList-Id: <l.example.org>\r\n\r\nbody\r\n";
    let prepared = prepare(&ed25519_request(), message, 1).unwrap();
    assert_eq!(
        tag(prepared.field().as_bytes(), "h").unwrap(),
        "from:to:to:subject:list-id:from"
    );
    let data = String::from_utf8_lossy(prepared.signed_data()).into_owned();
    assert!(data.starts_with(
        "from:a@example.org\r\nto:second@example.net\r\nto:first@example.net\r\n\
         subject:hi\r\nlist-id:<l.example.org>\r\ndkim-signature:"
    ));
    assert!(!data.contains("x-other"));
}

#[test]
fn oversigned_names_not_otherwise_signed_sign_their_instances_too() {
    let message = b"From: a@example.org\r\nX-A: 1\r\n\r\n";
    let mut request = ed25519_request();
    request.oversign = vec!["from".into(), "X-A".into(), "X-Absent".into()];
    let prepared = prepare(&request, message, 1).unwrap();
    assert_eq!(
        tag(prepared.field().as_bytes(), "h").unwrap(),
        "from:from:x-a:x-a:x-absent"
    );
    assert!(
        prepared
            .signed_data()
            .starts_with(b"from:a@example.org\r\nx-a:1\r\ndkim-signature:")
    );
}

/// Every line of a header field is at most `max` columns.
fn assert_lines_at_most(field: &[u8], max: usize) {
    for line in field
        .strip_suffix(b"\r\n")
        .unwrap_or(field)
        .split(|&b| b == b'\n')
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            line.len() <= max,
            "{} > {max}: {:?}",
            line.len(),
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn the_field_is_folded_at_78_columns_and_its_folds_are_signed() {
    let mut message = String::from("From: a@example.org\r\n");
    for index in 0..40 {
        message.push_str(&format!(
            "To: r{index}@example.net\r\nCc: c{index}@example.net\r\n"
        ));
    }
    message.push_str("\r\nbody\r\n");
    for canonicalization in [Canonicalization::Simple, Canonicalization::Relaxed] {
        let mut request = Request::new("mail.example.org", "selector-2026", Algorithm::RsaSha256);
        request.header_canonicalization = canonicalization;
        request.identity = Some("someone.with.a.long.name@mail.example.org".into());
        request.expiry = Some(604_800);
        let prepared = prepare(&request, message.as_bytes(), 1_700_000_000).unwrap();
        for signature_len in [0, 1, 64, 256, 512] {
            let field = prepared.finish(&vec![0x5A; signature_len]);
            assert_lines_at_most(&field, WIDTH);
            assert!(field.starts_with(prepared.field().as_bytes()));
            assert_eq!(tag(&field, "b").unwrap(), b64(&vec![0x5A; signature_len]));
            assert_eq!(tag(&field, "h").unwrap().matches("to").count(), 40);
            // What is signed is the field as written, folds and all, without b='s value.
            let mut own = Vec::new();
            let b_at = prepared.field().len();
            canonical_field(&field[..b_at], 14, 14, canonicalization, &mut own);
            assert!(prepared.signed_data().ends_with(&own[..own.len() - 2]));
        }
    }
}

#[test]
fn names_too_long_for_one_line_keep_their_tags_whole() {
    let label = "a".repeat(63);
    let domain = format!("{label}.{label}.{label}.{}", "b".repeat(61));
    assert_eq!(domain.len(), 253);
    let mut request = Request::new(domain.clone(), domain.clone(), Algorithm::Ed25519Sha256);
    request.identity = Some(format!("{}@{domain}", "i".repeat(64)));
    request.headers.push("X".repeat(74));
    let message = format!("From: x@{domain}\r\n{}: y\r\n\r\n", "X".repeat(74));
    let prepared = prepare(&request, message.as_bytes(), 1).unwrap();
    let field = prepared.finish(&[1; 64]);
    assert_lines_at_most(&field, 1 + 2 + 64 + 1 + 253 + 1);
    let text = String::from_utf8(field).unwrap();
    assert!(text.contains(&format!("\r\n d={domain};\r\n")), "{text}");
    assert!(text.contains(&format!("\r\n s={domain};\r\n")), "{text}");
    // Every line but those three has at most 78 columns.
    let long_lines = text.split("\r\n").filter(|line| line.len() > WIDTH).count();
    assert_eq!(long_lines, 3, "{text}");
}

#[test]
fn from_is_signed_whatever_the_header_list_says() {
    let mut request = ed25519_request();
    request.set_headers(vec!["Subject".to_owned(), "To".to_owned()]);
    assert_eq!(request.headers, ["From", "Subject", "To"]);
    assert_eq!(request.check(), Ok(()));
    request.set_headers(vec!["Subject".to_owned(), "fROM".to_owned()]);
    assert_eq!(request.headers, ["Subject", "fROM"]);
    request.set_headers(Vec::new());
    assert_eq!(request.headers, ["From"]);
    // Set by hand, the list without From is refused, not signed.
    request.headers = vec!["Subject".to_owned()];
    assert_eq!(request.check(), Err(Error::FromNotSigned));
}

#[test]
fn request_checks_name_the_value() {
    let refused = |change: &dyn Fn(&mut Request)| {
        let mut request = ed25519_request();
        change(&mut request);
        let error = request.check().unwrap_err();
        // prepare refuses it the same way.
        assert_eq!(prepare(&request, MESSAGE.as_bytes(), 1).unwrap_err(), error);
        error
    };
    for selector in [
        "", "a b", "a\r\nb", "a\nb", "a;b", "a..b", ".a", "a.", "-a", "a_b", "sél",
    ] {
        let error = refused(&|r| r.selector = selector.into());
        assert!(matches!(error, Error::Selector { .. }), "{selector:?}");
        assert!(
            error.to_string().contains(&format!("{selector:?}")),
            "{error}"
        );
    }
    let error = refused(&|r| r.selector = "sél".into());
    assert!(error.to_string().contains("A-label"), "{error}");
    for domain in [
        "",
        "org",
        "exa mple.org",
        "example.org\r\n",
        "example.org;",
        "example..org",
        "example.org.",
        "bücher.example",
        "a-.example",
        &format!("{}.org", "a".repeat(64)),
        &format!("{}.org", "a.".repeat(126)),
    ] {
        let error = refused(&|r| r.domain = domain.into());
        assert!(matches!(error, Error::Domain { .. }), "{domain:?}: {error}");
    }
    assert!(
        refused(&|r| r.domain = "a\r\nb.org".into())
            .to_string()
            .contains(r#""a\r\nb.org""#)
    );
    for identity in [
        "bob@example.com",
        "bob@badexample.org",
        "bob@example.org.evil",
        "bob",
        "bob smith@example.org",
        "bob=20@example.org",
        "bob;x@example.org",
        "\"bob\"@example.org",
        "bob@",
        "bob@sub..example.org",
        &format!("{}@example.org", "b".repeat(65)),
    ] {
        let error = refused(&|r| r.identity = Some(identity.into()));
        assert!(
            matches!(error, Error::Identity { .. }),
            "{identity:?}: {error}"
        );
    }
    assert!(
        refused(&|r| r.identity = Some("bob@example.com".into()))
            .to_string()
            .contains("subdomain")
    );
    for identity in [
        "@example.org",
        "bob@EXAMPLE.org",
        "b.o+b@mail.example.org",
        "@a.b.example.org",
    ] {
        let mut request = ed25519_request();
        request.identity = Some(identity.into());
        assert_eq!(request.check(), Ok(()), "{identity}");
    }
    assert_eq!(
        refused(&|r| r.headers.retain(|h| h != "From")),
        Error::FromNotSigned
    );
    assert_eq!(refused(&|r| r.oversign.clear()), Error::FromNotOversigned);
    assert_eq!(refused(&|r| r.expiry = Some(0)), Error::ZeroExpiry);
    let long = "X".repeat(75);
    for name in ["", "X Y", "X:Y", "X;Y", "Ünï", &long] {
        let error = refused(&|r| r.headers.push(name.into()));
        assert!(matches!(error, Error::HeaderName { .. }), "{name:?}");
    }
    // A hostile value is quoted and cut short in the message.
    let error = refused(&|r| r.selector = format!("{}\n", "x".repeat(10_000)));
    assert!(error.to_string().len() < 300, "{error}");
}

#[test]
fn times_beyond_twelve_digits_are_refused() {
    let mut request = ed25519_request();
    assert_eq!(
        prepare(&request, MESSAGE.as_bytes(), MAX_TIME + 1).unwrap_err(),
        Error::TimeOutOfRange
    );
    request.expiry = Some(u64::MAX);
    assert_eq!(
        prepare(&request, MESSAGE.as_bytes(), 1).unwrap_err(),
        Error::TimeOutOfRange
    );
    request.expiry = Some(1);
    assert!(prepare(&request, MESSAGE.as_bytes(), MAX_TIME - 1).is_ok());
}

#[test]
fn messages_that_cannot_be_signed_are_refused_with_the_line() {
    let request = ed25519_request();
    let cases: [(&[u8], Error); 7] = [
        (b"To: b@example.net\r\n\r\nbody", Error::NoFrom),
        (b"", Error::NoFrom),
        (b"\r\nFrom: a@example.org\r\n", Error::NoFrom),
        (
            b"From: a@example.org\r\nno colon here\r\n\r\n",
            Error::NotAField { line: 2 },
        ),
        (
            b" From: a@example.org\r\n\r\n",
            Error::NotAField { line: 1 },
        ),
        (
            b"From: a@example.org\r\n: empty name\r\n\r\n",
            Error::FieldName { line: 2 },
        ),
        (
            "From: a@example.org\r\nFr\u{f8}m: x\r\n\r\n".as_bytes(),
            Error::FieldName { line: 2 },
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(prepare(&request, message, 1).unwrap_err(), expected);
    }
    assert!(Error::NotAField { line: 2 }.to_string().contains("line 2"));
    let converted: crate::Error = Error::NoFrom.into();
    assert_eq!(converted.kind, crate::ErrorKind::InvalidInput);
    assert!(converted.message.contains("From"));
    // Whitespace before the colon is allowed (RFC 5322 obsolete syntax), and not signed.
    let prepared = prepare(&request, b"From : a@example.org\r\n\r\n", 1).unwrap();
    assert!(
        prepared
            .signed_data()
            .starts_with(b"from:a@example.org\r\n")
    );
}

/// The body hash `prepare` writes for `message`.
fn body_hash(message: &[u8], canonicalization: Canonicalization) -> String {
    let mut request = ed25519_request();
    request.body_canonicalization = canonicalization;
    let prepared = prepare(&request, message, 1).unwrap();
    tag(prepared.field().as_bytes(), "bh").unwrap()
}

#[test]
fn empty_bodies_and_bodies_of_only_line_ends() {
    for message in [
        &b"From: a@example.org"[..],
        b"From: a@example.org\r\n",
        b"From: a@example.org\r\n\r\n",
        b"From: a@example.org\r\n\r\n\r\n",
        b"From: a@example.org\r\n\r\n\r\n\r\n\r\n\r\n",
        b"From: a@example.org\n\n\n\r\r",
    ] {
        assert_eq!(
            body_hash(message, Canonicalization::Simple),
            SIMPLE_EMPTY_BODY
        );
        assert_eq!(
            body_hash(message, Canonicalization::Relaxed),
            RELAXED_EMPTY_BODY
        );
    }
    // Relaxed: lines of whitespace alone are empty lines too.
    let message = b"From: a@example.org\r\n\r\n  \r\n\t\r\n \t \r\n";
    assert_eq!(
        body_hash(message, Canonicalization::Relaxed),
        RELAXED_EMPTY_BODY
    );
    assert_ne!(
        body_hash(message, Canonicalization::Simple),
        SIMPLE_EMPTY_BODY
    );
    // A million empty lines are counted, not held.
    let mut message = b"From: a@example.org\r\n\r\n".to_vec();
    message.extend(b"\r\n".repeat(1_000_000));
    message.extend(b"x");
    assert_eq!(
        body_hash(&message, Canonicalization::Simple),
        b64(&Sha256::digest(
            [&b"\r\n".repeat(1_000_000)[..], b"x\r\n"].concat()
        ))
    );
}

#[test]
fn line_ends_are_read_as_the_encoder_writes_them() {
    // No final CRLF, bare CRs and bare LFs: the wire has CRLF for each (data::Encoder).
    let wire = b"From: a@example.org\r\nSubject: one\r\n two\r\n\r\nline 1\r\nline 2\r\n";
    let variants: [&[u8]; 4] = [
        b"From: a@example.org\r\nSubject: one\r\n two\r\n\r\nline 1\r\nline 2",
        b"From: a@example.org\rSubject: one\r two\r\rline 1\rline 2\r",
        b"From: a@example.org\nSubject: one\n two\n\nline 1\nline 2",
        b"From: a@example.org\r\nSubject: one\r two\n\r\nline 1\rline 2\n",
    ];
    for canonicalization in [Canonicalization::Simple, Canonicalization::Relaxed] {
        let mut request = ed25519_request();
        request.header_canonicalization = canonicalization;
        request.body_canonicalization = canonicalization;
        let expected = prepare(&request, wire, 9).unwrap();
        for variant in variants {
            let prepared = prepare(&request, variant, 9).unwrap();
            assert_eq!(prepared.signed_data(), expected.signed_data());
            assert_eq!(prepared.field(), expected.field());
        }
        // And that is what the encoder sends.
        let sent = crate::data::encode(variants[1], crate::data::Framing::Chunked).unwrap();
        assert_eq!(sent.wire, wire);
    }
}

#[test]
fn nul_and_non_utf8_bytes_are_signed_as_bytes() {
    let message = b"From: a@example.org\r\nSubject: \xff\x00 \xc3\r\n\r\n\x00\xfe  x \r\n";
    let mut request = ed25519_request();
    request.headers.push("Subject".into());
    let prepared = prepare(&request, message, 1).unwrap();
    assert!(
        prepared
            .signed_data()
            .windows(11)
            .any(|w| w == b"subject:\xff\x00 ")
    );
    assert_eq!(
        body_hash(message, Canonicalization::Relaxed),
        b64(&Sha256::digest(b"\x00\xfe x\r\n"))
    );
}

#[test]
fn ten_thousand_fields() {
    let mut message = String::from("From: a@example.org\r\n");
    for index in 0..10_000 {
        message.push_str(&format!(
            "X-Filler-{index}: value {index}\r\nTo: r{index}@example.net\r\n"
        ));
    }
    message.push_str("\r\nbody\r\n");
    let started = std::time::Instant::now();
    let prepared = prepare(&ed25519_request(), message.as_bytes(), 1).unwrap();
    let field = prepared.finish(&[0; 64]);
    assert_eq!(tag(&field, "h").unwrap().matches("to").count(), 10_000);
    assert_lines_at_most(&field, WIDTH);
    let data = String::from_utf8_lossy(prepared.signed_data()).into_owned();
    // Bottom up: the last To comes first.
    assert!(data.starts_with("from:a@example.org\r\nto:r9999@example.net\r\nto:r9998@"));
    assert!(!data.contains("x-filler"));
    // Linear: far under what a quadratic pass over 20 000 fields would take.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_one_megabyte_folded_subject() {
    let mut subject = String::from("Subject:");
    while subject.len() < 1 << 20 {
        subject.push_str(" word\t word\r\n  ");
    }
    subject.push_str("end");
    let message = format!("From: a@example.org\r\n{subject}\r\n\r\nbody\r\n");
    for canonicalization in [Canonicalization::Simple, Canonicalization::Relaxed] {
        let mut request = ed25519_request();
        request.header_canonicalization = canonicalization;
        let prepared = prepare(&request, message.as_bytes(), 1).unwrap();
        let data = prepared.signed_data();
        let canonical = match canonicalization {
            Canonicalization::Simple => format!("{subject}\r\n"),
            Canonicalization::Relaxed => {
                let words = subject["Subject:".len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>();
                format!("subject:{}\r\n", words.join(" "))
            }
        };
        // After the From field: 21 bytes simple, 20 relaxed.
        let at = 21 - usize::from(canonicalization == Canonicalization::Relaxed);
        assert!(data.len() > at + canonical.len());
        assert_eq!(&data[at..at + canonical.len()], canonical.as_bytes());
    }
}

#[test]
fn a_field_name_of_a_megabyte_and_a_header_without_a_body() {
    let name = "X".repeat(1 << 20);
    let message = format!("{name}: v\r\nFrom: a@example.org");
    let prepared = prepare(&ed25519_request(), message.as_bytes(), 1).unwrap();
    assert!(
        prepared
            .signed_data()
            .starts_with(b"from:a@example.org\r\n")
    );
}

/// `message`'s line ends each replaced by the one `choices` picks: CRLF, CR or LF (but
/// never LF right after a CR, which would make the two one CRLF).
fn with_line_ends(message: &str, choices: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, line) in message.split("\r\n").enumerate() {
        if index > 0 {
            out.extend_from_slice(match choices.get(index).copied().unwrap_or(0) % 3 {
                1 => &b"\r"[..],
                2 if out.last() != Some(&b'\r') => b"\n",
                _ => b"\r\n",
            });
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}

proptest::proptest! {
    #[test]
    fn relaxed_canonicalisation_is_idempotent(
        value in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b'B', b' ', b'\t', b':', b';', 0xC3, b'\r', b'\n']),
            0..80),
        body in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b' ', b'\t', b'\r', b'\n', 0x00]), 0..120),
    ) {
        // A field: continuation lines must start with whitespace.
        let mut field = b"Subject:".to_vec();
        for &byte in &value {
            field.push(byte);
            if byte == b'\n' || byte == b'\r' {
                field.push(b' ');
            }
        }
        let mut once = Vec::new();
        canonical_field(&field, 7, 7, Canonicalization::Relaxed, &mut once);
        let mut twice = Vec::new();
        canonical_field(&once[..once.len() - 2], 7, 7, Canonicalization::Relaxed, &mut twice);
        proptest::prop_assert_eq!(&once, &twice);

        let mut once = Vec::new();
        canonical_body(&body, Canonicalization::Relaxed, &mut |b| once.extend_from_slice(b));
        let mut twice = Vec::new();
        canonical_body(&once, Canonicalization::Relaxed, &mut |b| twice.extend_from_slice(b));
        proptest::prop_assert_eq!(&once, &twice);
    }

    #[test]
    fn relaxed_signing_input_ignores_how_the_header_is_spaced_and_folded(
        words in proptest::collection::vec("[a-zA-Z0-9<>@.,]{1,12}", 1..12),
        gaps_a in proptest::collection::vec(0usize..7, 13),
        gaps_b in proptest::collection::vec(0usize..7, 13),
    ) {
        const GAPS: [&str; 7] = [" ", "\t", "  ", "\r\n ", "\r\n\t", " \r\n  ", "\t\r\n \t"];
        let build = |gaps: &[usize]| {
            let mut message = String::from("From: a@example.org\r\nSubject:");
            for (index, word) in words.iter().enumerate() {
                message.push_str(GAPS[gaps[index]]);
                message.push_str(word);
            }
            // Whitespace at the end of the field, sometimes.
            if gaps[12] % 2 == 1 {
                message.push_str(GAPS[gaps[12]]);
            }
            message.push_str("\r\nTo: b@example.net\r\n\r\nbody\r\n");
            message
        };
        let (a, b) = (build(&gaps_a), build(&gaps_b));
        let request = ed25519_request();
        let a = prepare(&request, a.as_bytes(), 1).unwrap();
        let b = prepare(&request, b.as_bytes(), 1).unwrap();
        proptest::prop_assert_eq!(a.signed_data(), b.signed_data());
        proptest::prop_assert_eq!(a.signing_input(), b.signing_input());
    }

    #[test]
    fn any_bytes_never_panic_and_any_result_is_a_clean_field(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        shaped in proptest::collection::vec(
            proptest::sample::select(vec![b'F', b'r', b'o', b'm', b':', b' ', b'\t', b'\r', b'\n', 0, 0xFF]),
            0..300),
        from_first in proptest::prelude::any::<bool>(),
    ) {
        for input in [&bytes, &shaped] {
            let mut message = if from_first { b"From: a@example.org\r\n".to_vec() } else { Vec::new() };
            message.extend_from_slice(input);
            for canonicalization in [Canonicalization::Simple, Canonicalization::Relaxed] {
                let mut request = ed25519_request();
                request.header_canonicalization = canonicalization;
                request.body_canonicalization = canonicalization;
                if let Ok(prepared) = prepare(&request, &message, 1) {
                    let field = prepared.finish(&[0x42; 64]);
                    proptest::prop_assert!(field.is_ascii() && field.ends_with(b"\r\n"));
                    assert_lines_at_most(&field, WIDTH);
                    proptest::prop_assert_eq!(prepared.signing_input().len(), 32);
                }
            }
        }
    }

    #[test]
    fn trailing_line_ends_do_not_change_the_body_hash(
        body in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b' ', b'\t', b'\r', b'\n']), 0..100),
        extra in 1usize..5,
    ) {
        let mut message = b"From: a@example.org\r\n\r\n".to_vec();
        message.extend_from_slice(&body);
        let mut longer = message.clone();
        longer.extend(b"\r\n".repeat(extra));
        for canonicalization in [Canonicalization::Simple, Canonicalization::Relaxed] {
            proptest::prop_assert_eq!(
                body_hash(&message, canonicalization),
                body_hash(&longer, canonicalization)
            );
        }
    }

    #[test]
    fn bare_cr_and_lf_sign_as_crlf(choices in proptest::collection::vec(0u8..3, 16)) {
        let base = MESSAGE.trim_end_matches("\r\n");
        let mixed = with_line_ends(base, &choices);
        for canonicalization in [Canonicalization::Simple, Canonicalization::Relaxed] {
            let mut request = ed25519_request();
            request.header_canonicalization = canonicalization;
            request.body_canonicalization = canonicalization;
            let expected = prepare(&request, base.as_bytes(), 3).unwrap();
            let prepared = prepare(&request, &mixed, 3).unwrap();
            proptest::prop_assert_eq!(prepared.signed_data(), expected.signed_data());
            proptest::prop_assert_eq!(prepared.field(), expected.field());
        }
    }
}
