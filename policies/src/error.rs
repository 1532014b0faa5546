//! Policy errors: every problem in a file is collected and reported at once,
//! each with the file, line and column it came from and a hint.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub hint: Option<String>,
    /// Byte range in the file; `None` when the problem is about the file as a whole.
    pub span: Option<Range<usize>>,
    /// 1-based line and column of the start of `span`.
    pub line: usize,
    pub column: usize,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_invalid(.path, .problems))]
    Invalid {
        path: PathBuf,
        source_text: String,
        problems: Vec<Problem>,
    },
}

impl PolicyError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            PolicyError::Read { .. } => &[],
            PolicyError::Invalid { problems, .. } => problems,
        }
    }

    /// A miette report for terminals: source excerpts with every problem labelled.
    pub fn report(&self) -> miette::Report {
        match self {
            PolicyError::Read { path, source } => {
                miette::miette!("cannot read policy file {}: {source}", path.display())
            }
            PolicyError::Invalid {
                path,
                source_text,
                problems,
            } => miette::Report::new(InvalidReport {
                name: path.display().to_string(),
                source: NamedSource::new(path.display().to_string(), source_text.clone()),
                problems: problems.clone(),
            }),
        }
    }
}

fn render_invalid(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "policy {} is invalid ({} problem{}):",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!(
            "\n  {}:{}:{}: {}",
            path.display(),
            p.line,
            p.column,
            p.message
        ));
        if let Some(hint) = &p.hint {
            out.push_str(&format!(" (hint: {hint})"));
        }
    }
    out
}

/// The terminal rendering of an invalid policy.
#[derive(Debug)]
struct InvalidReport {
    name: String,
    source: NamedSource<String>,
    problems: Vec<Problem>,
}

impl fmt::Display for InvalidReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            render_invalid(Path::new(&self.name), &self.problems)
        )
    }
}

impl std::error::Error for InvalidReport {}

impl Diagnostic for InvalidReport {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("gatehouse::policy::invalid"))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.problems.iter().filter_map(|p| {
            let span = p.span.clone()?;
            let label = match &p.hint {
                Some(hint) => format!("{} — {hint}", p.message),
                None => p.message.clone(),
            };
            Some(LabeledSpan::new_with_span(
                Some(label),
                SourceSpan::from(span),
            ))
        })))
    }
}

/// Collects problems while a policy is converted, turning byte spans into
/// line and column once, against the file's text.
pub(crate) struct Problems<'a> {
    text: &'a str,
    found: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Problems {
            text,
            found: Vec::new(),
        }
    }

    /// The line and column of byte `offset` of the policy text.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        line_column(self.text, offset)
    }

    pub(crate) fn add(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.push(span, message.into(), None);
    }

    pub(crate) fn add_hint(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(span, message.into(), Some(hint.into()));
    }

    fn push(&mut self, span: Option<Range<usize>>, message: String, hint: Option<String>) {
        let (line, column) = span
            .as_ref()
            .map(|s| line_column(self.text, s.start))
            .unwrap_or((1, 1));
        self.found.push(Problem {
            message,
            hint,
            span,
            line,
            column,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<Problem> {
        self.found
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 8), (2, 3));
    }

    #[test]
    fn line_column_counts_characters_not_bytes() {
        let text = "name = \"é\" x";
        assert_eq!(line_column(text, text.find('x').unwrap_or(0)), (1, 12));
    }
}
