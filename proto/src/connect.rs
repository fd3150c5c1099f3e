//! Which address to try next, and for how long (RFC 8305, "Happy Eyeballs").
//!
//! A name often resolves to both IPv6 and IPv4 addresses, and one of them may be
//! black-holed: its connect neither succeeds nor fails until the timeout. So the driver
//! tries the addresses in [`attempt_order`], one at a time, and gives each attempt only its
//! share of what is left of the connect timeout ([`attempt_deadline`]), so that a silent
//! address cannot use up the time the next one needs.

use std::net::IpAddr;

/// The addresses in the order to try them: duplicates dropped, and the two families
/// interleaved, starting with the family of the first address (the resolver's preference),
/// as RFC 8305 section 4 asks. Within a family the given order is kept.
pub fn attempt_order(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let mut unique: Vec<IpAddr> = Vec::with_capacity(addresses.len());
    for address in addresses {
        if !unique.contains(address) {
            unique.push(*address);
        }
    }
    let Some(first) = unique.first() else {
        return unique;
    };
    let first_is_v6 = first.is_ipv6();
    let (mut preferred, mut other) = (Vec::new(), Vec::new());
    for address in unique {
        if address.is_ipv6() == first_is_v6 {
            preferred.push(address);
        } else {
            other.push(address);
        }
    }
    let mut order = Vec::with_capacity(preferred.len() + other.len());
    let (mut preferred, mut other) = (preferred.into_iter(), other.into_iter());
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => return order,
            (a, b) => order.extend(a.into_iter().chain(b)),
        }
    }
}

/// When the attempt starting at `now` must give up, so that the `attempts_left` attempts
/// (this one included) share what is left before `deadline` equally. Times are in any
/// monotonic unit.
pub fn attempt_deadline(now: u64, deadline: u64, attempts_left: usize) -> u64 {
    let left = deadline.saturating_sub(now);
    let share = left / (attempts_left.max(1) as u64);
    now + share
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_alternate_from_the_first_address_family() {
        assert_eq!(
            attempt_order(&ips(&["::1", "::2", "::3", "10.0.0.1", "10.0.0.2"])),
            ips(&["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"])
        );
        assert_eq!(
            attempt_order(&ips(&["10.0.0.1", "::1", "::2"])),
            ips(&["10.0.0.1", "::1", "::2"])
        );
    }

    #[test]
    fn duplicates_are_tried_once_and_one_family_keeps_its_order() {
        assert_eq!(
            attempt_order(&ips(&["10.0.0.2", "10.0.0.1", "10.0.0.2"])),
            ips(&["10.0.0.2", "10.0.0.1"])
        );
        assert!(attempt_order(&[]).is_empty());
    }

    #[test]
    fn each_attempt_gets_its_share_of_what_is_left() {
        assert_eq!(attempt_deadline(0, 3000, 3), 1000);
        // The last attempt gets everything left, however the earlier ones went.
        assert_eq!(attempt_deadline(2500, 3000, 1), 3000);
        // A deadline already past gives an attempt no time, and never underflows.
        assert_eq!(attempt_deadline(4000, 3000, 2), 4000);
        assert_eq!(attempt_deadline(0, 100, 0), 100);
    }
}
