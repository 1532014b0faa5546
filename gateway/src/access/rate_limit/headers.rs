//! `RateLimit-Policy`, `RateLimit` (draft-ietf-httpapi-ratelimit-headers)
//! and `Retry-After`, as the gateway sends them.

use std::time::Duration;

use gatehouse_policy::Rate;
use http::{HeaderName, HeaderValue};

use super::{Allowance, Tier};

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl Allowance {
    /// `RateLimit-Policy` and `RateLimit` for the response.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 2] {
        [
            (RATELIMIT_POLICY, self.policy_header.clone()),
            (
                RATELIMIT,
                state_header(self.tier, self.remaining, self.reset),
            ),
        ]
    }
}

/// A tier's `RateLimit-Policy`: the same for every request it allows.
pub fn policy_header(tier: Tier, rate: Rate) -> HeaderValue {
    let window = rate.per.as_secs().max(1);
    header_value(format!("\"{}\";q={};w={window}", tier.as_str(), rate.count))
}

/// `RateLimit`: what is left of the quota, and when it is whole again.
/// Written with `itoa` rather than `format!`: it goes on every response.
pub fn state_header(tier: Tier, remaining: u32, reset: Duration) -> HeaderValue {
    let reset = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    let mut digits = itoa::Buffer::new();
    let mut text = String::with_capacity(48);
    text.push('"');
    text.push_str(tier.as_str());
    text.push_str("\";r=");
    text.push_str(digits.format(remaining));
    text.push_str(";t=");
    text.push_str(digits.format(reset));
    header_value(text)
}

fn header_value(text: String) -> HeaderValue {
    // Built from digits and a fixed name only; the String becomes the
    // value without a copy.
    HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("\"gatehouse\""))
}

/// Seconds for `Retry-After`, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}
