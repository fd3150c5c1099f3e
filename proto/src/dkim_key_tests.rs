//! Tests of `dkim_key`: keys in every shape `openssl` and ring write them, the ones refused
//! and their words, signatures that verify, and records that match openssl's public key.

use super::*;

use std::io::Write as _;
use std::process::{Command, Stdio};

use ring::signature::{ED25519, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

/// What `openssl ARGS` writes with `input` on its standard input.
fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs (the DKIM key tests need it)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn genpkey(algorithm: &str, option: Option<&str>) -> Vec<u8> {
    let mut args = vec!["genpkey", "-algorithm", algorithm];
    if let Some(option) = option {
        args.extend(["-pkeyopt", option]);
    }
    openssl(&args, b"")
}

/// The key's public half as openssl writes it: SubjectPublicKeyInfo in DER.
fn openssl_spki(pem: &[u8]) -> Vec<u8> {
    openssl(&["pkey", "-pubout", "-outform", "DER"], pem)
}

/// Signs, and verifies the signature with the public key of the record.
#[track_caller]
fn assert_signs_and_verifies(key: &SigningKey) {
    let input = b"from:a@example.org\r\ndkim-signature:v=1; b=";
    let signature = key.sign(input).unwrap();
    let record = key.public_record();
    let p = BASE64.decode(record.rsplit_once("p=").unwrap().1).unwrap();
    match key.algorithm() {
        Algorithm::RsaSha256 => {
            // The record holds SubjectPublicKeyInfo; ring verifies with the RSAPublicKey
            // inside it, after the 24 bytes of header of a 2048-bit key's.
            assert_eq!(signature.len(), 256);
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &p[24..])
                .verify(input, &signature)
                .expect("the RSA signature verifies with the record's key");
        }
        Algorithm::Ed25519Sha256 => {
            assert_eq!(p.len(), 32);
            UnparsedPublicKey::new(&ED25519, &p)
                .verify(input, &signature)
                .expect("the Ed25519 signature verifies with the record's key");
        }
    }
}

#[test]
fn every_shape_of_key_is_read_or_refused_in_words() {
    let rsa = genpkey("RSA", Some("rsa_keygen_bits:2048"));
    let spki = openssl_spki(&rsa);
    let expected_rsa = format!("v=DKIM1; k=rsa; p={}", BASE64.encode(&spki));
    let mut prefixed = b"\xef\xbb\xbfa key for DKIM\n".to_vec();
    prefixed.extend_from_slice(&rsa);
    for (shape, bytes) in [
        ("PKCS#8 RSA PEM", rsa.clone()),
        ("PKCS#8 RSA PEM after text", prefixed),
        (
            "PKCS#8 RSA DER",
            openssl(&["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"], &rsa),
        ),
        ("PKCS#1 RSA PEM", openssl(&["rsa", "-traditional"], &rsa)),
        (
            "PKCS#1 RSA DER",
            openssl(&["rsa", "-traditional", "-outform", "DER"], &rsa),
        ),
    ] {
        let key = SigningKey::parse(&bytes).unwrap_or_else(|e| panic!("{shape}: {e}"));
        assert_eq!(key.algorithm(), Algorithm::RsaSha256, "{shape}");
        assert_eq!(key.public_record(), expected_rsa, "{shape}");
        assert_signs_and_verifies(&key);
    }

    // Ed25519: version 1 as OpenSSL writes it, version 2 (with the public key) as ring does.
    let v1 = genpkey("ED25519", None);
    let v1_spki = openssl_spki(&v1);
    let key = SigningKey::parse(&v1).expect("Ed25519 PKCS#8 v1");
    assert_eq!(key.algorithm(), Algorithm::Ed25519Sha256);
    assert_eq!(
        key.public_record(),
        format!("v=DKIM1; k=ed25519; p={}", BASE64.encode(&v1_spki[12..]))
    );
    assert_signs_and_verifies(&key);
    let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let key = SigningKey::parse(v2.as_ref()).expect("Ed25519 PKCS#8 v2 in DER");
    let public = Ed25519KeyPair::from_pkcs8(v2.as_ref()).unwrap();
    assert_eq!(
        key.public_record(),
        format!(
            "v=DKIM1; k=ed25519; p={}",
            BASE64.encode(public.public_key().as_ref())
        )
    );
    assert_signs_and_verifies(&key);

    // Refused, each with its own words.
    let ec = genpkey("EC", Some("ec_paramgen_curve:P-256"));
    for (shape, bytes, expected) in [
        (
            "encrypted PKCS#8",
            openssl(&["pkey", "-aes256", "-passout", "pass:x"], &rsa),
            KeyError::Encrypted,
        ),
        (
            "encrypted PKCS#1",
            openssl(
                &["rsa", "-traditional", "-aes256", "-passout", "pass:x"],
                &rsa,
            ),
            KeyError::Encrypted,
        ),
        ("EC in PKCS#8 PEM", ec.clone(), KeyError::EcKey),
        ("EC in SEC1 PEM", openssl(&["ec"], &ec), KeyError::EcKey),
        (
            "EC in PKCS#8 DER",
            openssl(&["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"], &ec),
            KeyError::EcKey,
        ),
        (
            "EC P-256 in SEC1 DER",
            openssl(&["pkey", "-outform", "DER"], &ec),
            KeyError::EcKey,
        ),
        (
            "EC P-384 in SEC1 DER",
            openssl(
                &["pkey", "-outform", "DER"],
                &genpkey("EC", Some("ec_paramgen_curve:P-384")),
            ),
            KeyError::EcKey,
        ),
        (
            "certificate",
            openssl(
                &[
                    "req",
                    "-x509",
                    "-key",
                    "/dev/stdin",
                    "-subj",
                    "/CN=x",
                    "-days",
                    "1",
                ],
                &rsa,
            ),
            KeyError::NoPrivateKey,
        ),
        (
            "public key",
            openssl(&["pkey", "-pubout"], &rsa),
            KeyError::NoPrivateKey,
        ),
        (
            "truncated PEM",
            rsa[..rsa.len() / 2].to_vec(),
            KeyError::NoPrivateKey,
        ),
        (
            "RSA-1024",
            genpkey("RSA", Some("rsa_keygen_bits:1024")),
            KeyError::RsaTooSmall,
        ),
        (
            "garbage DER",
            b"\x30\x03\x02\x01\x00".to_vec(),
            KeyError::Unknown,
        ),
        ("nothing", Vec::new(), KeyError::Unknown),
    ] {
        let error = SigningKey::parse(&bytes).expect_err(shape);
        assert_eq!(error, expected, "{shape}");
        let words = error.to_string();
        assert!(words.starts_with("the DKIM key"), "{shape}: {words}");
    }
}

#[test]
fn the_words_say_what_to_do_and_become_invalid_input() {
    let cases = [
        (KeyError::Encrypted, "openssl pkey -in KEY -out PLAIN"),
        (KeyError::EcKey, "RSA or Ed25519"),
        (KeyError::NoPrivateKey, "a certificate or a public key"),
        (KeyError::RsaTooSmall, "2048 bits or more"),
        (KeyError::RsaTooLarge, "at most 4096 bits"),
        (
            KeyError::WrongAlgorithm {
                key: Algorithm::RsaSha256,
                asked: Algorithm::Ed25519Sha256,
            },
            "the DKIM key is for rsa-sha256, not ed25519-sha256",
        ),
    ];
    for (error, words) in cases {
        assert!(error.to_string().contains(words), "{error}");
        let error = crate::Error::from(error);
        assert_eq!(error.phase, Phase::Sign);
        assert_eq!(error.kind, crate::ErrorKind::InvalidInput);
        assert!(!error.transient);
    }
}

#[test]
fn debug_shows_the_algorithm_and_size_and_no_key() {
    let rsa = genpkey("RSA", Some("rsa_keygen_bits:2048"));
    let key = SigningKey::parse(&rsa).unwrap();
    let shown = format!("{key:?}");
    assert_eq!(
        shown,
        "SigningKey { algorithm: \"rsa-sha256\", bits: 2048, .. }"
    );
    assert!(key.check_algorithm(Algorithm::RsaSha256).is_ok());
    assert_eq!(
        key.check_algorithm(Algorithm::Ed25519Sha256),
        Err(KeyError::WrongAlgorithm {
            key: Algorithm::RsaSha256,
            asked: Algorithm::Ed25519Sha256
        })
    );
    let ed = SigningKey::parse(&genpkey("ED25519", None)).unwrap();
    let shown = format!("{ed:?}");
    assert_eq!(shown, "SigningKey { algorithm: \"ed25519-sha256\", .. }");
    let p = ed.public_record();
    assert!(!shown.contains(p.rsplit_once("p=").unwrap().1));
}
