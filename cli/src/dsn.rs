//! Delivery status notification requests (RFC 3461), read the same way from `send`'s
//! --dsn-* options and from sendmail's -N, -R and -V, straight into the library's types.

use sendbox::{Dsn, DsnNotify, DsnReturn};

/// `never`, or a comma list of `success`, `failure` and `delay` (any case).
pub fn notify(value: &str) -> Result<DsnNotify, String> {
    let mut notify = DsnNotify::empty();
    let mut never = false;
    for word in value.split(',').map(str::trim) {
        let flag = match word.to_ascii_lowercase().as_str() {
            "never" => {
                never = true;
                continue;
            }
            "success" => DsnNotify::SUCCESS,
            "failure" => DsnNotify::FAILURE,
            "delay" => DsnNotify::DELAY,
            _ => return Err(format!("{word:?} is not never, success, failure or delay")),
        };
        notify |= flag;
    }
    if never && notify != DsnNotify::empty() {
        return Err("never goes alone".to_owned());
    }
    Ok(notify)
}

/// `notify` as [`notify`] reads it.
pub fn notify_text(notify: DsnNotify) -> String {
    let words: Vec<&str> = [
        (DsnNotify::SUCCESS, "success"),
        (DsnNotify::FAILURE, "failure"),
        (DsnNotify::DELAY, "delay"),
    ]
    .into_iter()
    .filter(|(flag, _)| notify.contains(*flag))
    .map(|(_, word)| word)
    .collect();
    if words.is_empty() {
        "never".to_owned()
    } else {
        words.join(",")
    }
}

/// `ret` as [`ret`] reads it.
pub fn ret_text(ret: DsnReturn) -> &'static str {
    match ret {
        DsnReturn::Full => "full",
        DsnReturn::Headers => "hdrs",
    }
}

/// `full` or `hdrs`: what a failure notification returns.
pub fn ret(value: &str) -> Result<DsnReturn, String> {
    match value.to_ascii_lowercase().as_str() {
        "full" => Ok(DsnReturn::Full),
        "hdrs" => Ok(DsnReturn::Headers),
        _ => Err(format!("{value:?} is not full or hdrs")),
    }
}

/// An envelope id, as proto checks it: printable ASCII, at most 100 characters once
/// xtext-encoded (RFC 3461).
pub fn envid(value: &str) -> Result<String, String> {
    sendbox_proto::check_envid(value).map_err(|why| format!("{value:?}: {why}"))?;
    Ok(value.to_owned())
}

/// The request, if anything was asked.
pub fn request(
    notify: Option<DsnNotify>,
    ret: Option<DsnReturn>,
    envid: Option<String>,
) -> Option<Dsn> {
    let asked = notify.is_some() || ret.is_some() || envid.is_some();
    asked.then_some(Dsn {
        notify,
        ret,
        envid,
        original_recipients: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(notify("NEVER"), Ok(DsnNotify::empty()));
        assert_eq!(
            notify("delay, Success,delay"),
            Ok(DsnNotify::DELAY | DsnNotify::SUCCESS)
        );
        assert!(notify("never,success").is_err());
        assert!(notify("").is_err());
        assert_eq!(ret("HDRS"), Ok(DsnReturn::Headers));
        assert!(ret("partial").is_err());
        for text in ["never", "success", "success,failure,delay", "failure,delay"] {
            assert_eq!(notify_text(notify(text).unwrap()), text);
        }
        for text in ["full", "hdrs"] {
            assert_eq!(ret_text(ret(text).unwrap()), text);
        }
        assert!(envid("a\tb").is_err());
        assert!(
            envid(&"+".repeat(34)).is_err(),
            "102 characters once encoded"
        );
        assert!(envid(&"e".repeat(100)).is_ok());
        assert!(request(None, None, None).is_none());
        let asked = request(None, None, Some("id".into())).unwrap();
        assert_eq!((asked.notify, asked.envid.as_deref()), (None, Some("id")));
    }
}
