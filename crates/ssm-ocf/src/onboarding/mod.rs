//! Onboarding (the OBT side): owner transfer and provisioning, as
//! request sequences (sans-IO): each step is a CoAP request for a transport
//! (plain CoAP, the owner-transfer DTLS session, or an owner session), and
//! a step advances only on a success response. The runtime opens the DTLS
//! sessions and moves the bytes. (DIGEST §6 steps 2–15, §7.)
use crate::cbor;
use crate::message;
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType};

mod reconcile;
mod sequence;

pub use reconcile::{
    compare, hrefs_in_desc, read_state, reconcile, Comparison, Reconciliation, MANAGED_CREDTYPES,
    SSM_HREFS_TAG,
};
pub use sequence::{hard_reset, owner_transfer, provision, rename, MAX_BATCH_BYTES};

/// Which channel a request must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Plain CoAP (only `oxmsel` before the DTLS session).
    Plain,
    /// The Random PIN DTLS session.
    OwnerTransfer,
    /// A DTLS session with the owner PSK.
    Owner,
}

/// A step that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step} ({what}) failed: {code}")]
pub struct StepError {
    /// Step number.
    pub step: usize,
    /// What it did.
    pub what: &'static str,
    /// The response code.
    pub code: Code,
}

/// One request of a sequence.
#[derive(Debug, Clone)]
pub struct Step {
    /// Channel to use.
    pub channel: Channel,
    /// What it does (for errors and progress).
    pub what: &'static str,
    /// The request (CON; MID and token set by the runtime).
    pub request: Message,
}

fn post(href: &str, body: Value) -> Message {
    message::update(MessageType::Confirmable, href, &body)
}

fn text(s: impl ToString) -> Value {
    Value::Text(s.to_string())
}

fn dos(s: u8) -> Value {
    cbor::map([("dos", cbor::map([("s", Value::Integer(s.into()))]))])
}

/// A request sequence and how far it got.
#[derive(Debug, Clone)]
pub struct Sequence {
    steps: Vec<Step>,
    next: usize,
}

impl Sequence {
    /// The next step, if any.
    pub fn next_step(&self) -> Option<&Step> {
        self.steps.get(self.next)
    }

    /// Feeds the response of the current step.
    pub fn on_response(&mut self, resp: &Message) -> Result<(), StepError> {
        let Some(step) = self.steps.get(self.next) else {
            return Ok(());
        };
        if resp.code.class() != 2 {
            return Err(StepError {
                step: self.next,
                what: step.what,
                code: resp.code,
            });
        }
        self.next += 1;
        Ok(())
    }

    /// All steps done.
    pub fn is_done(&self) -> bool {
        self.next >= self.steps.len()
    }

    /// (done, total).
    pub fn progress(&self) -> (usize, usize) {
        (self.next, self.steps.len())
    }
}

#[cfg(test)]
mod tests;
