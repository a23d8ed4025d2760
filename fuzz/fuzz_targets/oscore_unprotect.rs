//! The OSCORE option parser and unprotect (RFC 8613 §6, §8.2, §8.4) under
//! the RFC 8613 Appendix C server contexts and the iotivity-lite SSM group:
//! never a panic, and the replay window moves only for a datagram whose tag
//! verified.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssm_oscore::{Id, OscoreOption, PartialIv, RequestBinding};

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = OscoreOption::parse(data) {
        let mut buf = [0u8; 64];
        let n = o.emit(&mut buf).expect("a parsed option re-emits");
        assert_eq!(&buf[..n], data, "option round trip");
    }
    let mut r = ssm_fuzz::iotivity_recipient();
    let before = r.replay;
    let mut d = data.to_vec();
    if r.unprotect_request(&mut d).is_err() {
        assert_eq!(r.replay, before, "window moved on a rejected datagram");
    }
    for mut s in ssm_fuzz::rfc8613_servers() {
        let before = s.recipient.replay;
        let mut d = data.to_vec();
        if s.recipient.unprotect_request(&mut d).is_err() {
            assert_eq!(
                s.recipient.replay, before,
                "window moved on a rejected datagram"
            );
        }
        let binding = RequestBinding {
            kid: Id::new(&[]).unwrap(),
            partial_iv: PartialIv::from_u64(20).unwrap(),
            kid_context: None,
            observe: false,
        };
        let mut d = data.to_vec();
        let _ = s.recipient.unprotect_response(&binding, &mut d);
    }
});
