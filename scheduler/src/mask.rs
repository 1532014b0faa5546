//! Masking of sensitive env values in run output, before it is stored.
//!
//! The values of a job's `sensitive = true` variables, as read when the run
//! started, are replaced by `***` in the container's output as it streams
//! from Docker, before the log tail is cut and stored: the run history (and
//! so the API, the dashboard and notifications, which read it) never holds
//! them.
//!
//! - **Split values:** Docker delivers output in chunks that may cut a
//!   value anywhere. [`MaskStream`] holds back the end of a chunk while it
//!   could still be the start of a value, so a value split across chunks is
//!   masked like one that is not.
//! - **Short values:** values shorter than [`MIN_MASKED_LEN`] bytes are not
//!   masked (and a warning says so): replacing every `1` or `on` in the
//!   output garbles it and still gives the value away by where `***`
//!   appears. Secrets that short are not secrets; use longer ones.
//! - Only the exact bytes are masked, not encodings of them (base64, URL
//!   encoding, a reversed string): a job that transforms its secret and
//!   prints the result defeats any masking.

use aho_corasick::{AhoCorasick, MatchKind};
use gatehouse_policy::scheduler::Job;

/// Sensitive values shorter than this are not masked (see the module doc).
pub const MIN_MASKED_LEN: usize = 4;
pub const MASK: &[u8] = b"***";

/// The values to mask in one run's output.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// `None` when there is nothing to mask.
    matcher: Option<AhoCorasick>,
    longest: usize,
}

impl Masker {
    /// From the values the run's container was given; warns (by name,
    /// never value) about sensitive values too short to mask.
    pub fn for_env(job: &Job, env: &[(String, String)]) -> Masker {
        let mut values = Vec::new();
        for (name, value) in env {
            let sensitive = job.env.iter().any(|e| &e.name == name && e.sensitive);
            if !sensitive || value.is_empty() {
                continue;
            }
            if value.len() < MIN_MASKED_LEN {
                tracing::warn!(job = %job.name, variable = %name, "sensitive value is shorter than {MIN_MASKED_LEN} bytes and is not masked in the run's output");
                continue;
            }
            values.push(value.as_bytes().to_vec());
        }
        Masker::new(values)
    }

    /// Values shorter than [`MIN_MASKED_LEN`] are ignored.
    pub fn new(values: Vec<Vec<u8>>) -> Masker {
        let values: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_MASKED_LEN)
            .collect();
        let longest = values.iter().map(Vec::len).max().unwrap_or(0);
        // Leftmost-longest: of two values starting at one place, the
        // longer is masked whole rather than leaving its tail.
        let matcher = if values.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&values)
                .map_err(|e| tracing::error!(error = %e, "cannot build the output masker"))
                .ok()
        };
        Masker { matcher, longest }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Masks a whole text at once.
    pub fn mask(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = self.stream();
        let mut out = stream.push(bytes);
        out.extend(stream.finish());
        out
    }

    pub fn stream(&self) -> MaskStream<'_> {
        MaskStream {
            masker: self,
            pending: Vec::new(),
        }
    }
}

/// Masks a stream chunk by chunk; what it returns is safe to keep.
pub struct MaskStream<'a> {
    masker: &'a Masker,
    /// Bytes not yet returned: they may begin a value that the next chunk
    /// completes.
    pending: Vec<u8>,
}

impl MaskStream<'_> {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(matcher) = &self.masker.matcher else {
            return chunk.to_vec();
        };
        self.pending.extend_from_slice(chunk);
        // A match starting before `safe` lies wholly in `pending` with any
        // longer rival, so it is final; bytes from `safe` on may still
        // begin a value.
        let safe = self
            .pending
            .len()
            .saturating_sub(self.masker.longest.saturating_sub(1));
        let mut out = Vec::with_capacity(self.pending.len());
        let mut done = 0;
        for m in matcher.find_iter(&self.pending) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&self.pending[done..m.start()]);
            out.extend_from_slice(MASK);
            done = m.end();
        }
        let cut = safe.max(done);
        out.extend_from_slice(&self.pending[done..cut]);
        self.pending.drain(..cut);
        out
    }

    /// The held-back end of the stream, masked.
    pub fn finish(mut self) -> Vec<u8> {
        let Some(matcher) = &self.masker.matcher else {
            return std::mem::take(&mut self.pending);
        };
        let mut out = Vec::with_capacity(self.pending.len());
        let mut done = 0;
        for m in matcher.find_iter(&self.pending) {
            out.extend_from_slice(&self.pending[done..m.start()]);
            out.extend_from_slice(MASK);
            done = m.end();
        }
        out.extend_from_slice(&self.pending[done..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(values: &[&str]) -> Masker {
        Masker::new(values.iter().map(|v| v.as_bytes().to_vec()).collect())
    }

    fn streamed(masker: &Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut stream = masker.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(stream.push(chunk));
        }
        out.extend(stream.finish());
        out
    }

    #[test]
    fn values_are_masked_wherever_they_appear() {
        let m = masker(&["hunter2-secret"]);
        assert_eq!(
            m.mask(b"token=hunter2-secret; again hunter2-secret."),
            b"token=***; again ***.".to_vec()
        );
    }

    #[test]
    fn a_value_split_across_chunks_is_masked() {
        let m = masker(&["hunter2-secret"]);
        let text = b"before hunter2-secret after";
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let out = streamed(&m, &[&text[..cut], &text[cut..cut2], &text[cut2..]]);
                assert_eq!(out, b"before *** after".to_vec(), "cuts at {cut}, {cut2}");
            }
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(streamed(&m, &bytes), b"before *** after".to_vec());
    }

    #[test]
    fn the_longer_of_overlapping_values_wins() {
        let m = masker(&["abcd", "abcdefgh"]);
        assert_eq!(m.mask(b"xabcdefghx abcdx"), b"x***x ***x".to_vec());
        let out = streamed(&m, &[b"xabc", b"defghx"]);
        assert_eq!(out, b"x***x".to_vec());
    }

    #[test]
    fn short_values_are_not_masked() {
        let m = masker(&["on", "abc"]);
        assert!(m.is_empty());
        assert_eq!(m.mask(b"on abc"), b"on abc".to_vec());
    }

    #[test]
    fn a_partial_value_at_the_end_is_kept() {
        let m = masker(&["hunter2-secret"]);
        assert_eq!(streamed(&m, &[b"x hunter2-sec"]), b"x hunter2-sec".to_vec());
    }
}
