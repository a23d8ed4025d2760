//! Option classes, RFC 8613 §4.1 (Figure 5).
use ssm_coap::OptionNumber;

/// Where an option of the original message goes when protecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Class E: inside the ciphertext only.
    Inner,
    /// Class U only: stays in the outer message.
    Outer,
    /// Needs both an inner and an outer instance (Observe).
    Both,
    /// Proxy-Uri: decomposed (§4.1.3.3).
    ProxyUri,
}

/// The placement of `n` when protecting. Unknown options are Class E
/// (§4.1: "options ... not in the table are Class E").
pub fn placement(n: OptionNumber) -> Placement {
    match n {
        OptionNumber::URI_HOST
        | OptionNumber::URI_PORT
        | OptionNumber::PROXY_SCHEME
        | OptionNumber::OSCORE => Placement::Outer,
        OptionNumber::OBSERVE => Placement::Both,
        OptionNumber::PROXY_URI => Placement::ProxyUri,
        _ => Placement::Inner,
    }
}

/// Outer options a receiver keeps (§8.2 step 1, §8.4 step 1: every option
/// with an 'x' in column E is discarded, and so is the OSCORE option).
pub fn kept_on_receive(n: OptionNumber) -> bool {
    matches!(
        n,
        OptionNumber::URI_HOST
            | OptionNumber::URI_PORT
            | OptionNumber::PROXY_URI
            | OptionNumber::PROXY_SCHEME
    )
}
