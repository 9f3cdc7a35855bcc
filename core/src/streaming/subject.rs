//! Subjects and subject patterns: an event's topic is a dotted subject
//! (`orders.eu.created`), and readers and sinks select events with a pattern
//! ([`Filter::subject`](super::Filter::subject)).
//!
//! One rule on both sides, checked when the event is added and when the filter is made:
//! - a subject is a valid name ([`validate_name`]: 1–512 bytes, no whitespace, control
//!   characters or `* ? [ ] { }`), without `>`, made of non-empty segments separated by
//!   `.` (no leading, trailing or doubled dot);
//! - a pattern is a subject in which a segment may be exactly `*` (any one segment) and the
//!   last segment may be exactly `>` (one or more trailing segments).
//!
//! `orders.>` matches `orders.eu` and `orders.eu.created`, and **not** `orders` itself (as
//! in NATS: `>` stands for at least one segment; bus matches the bare prefix too). To take
//! `orders` as well, filter on `orders` with a second reader or sink, or use
//! [`Filter::custom`](super::Filter::custom).
//!
//! A pattern is compiled once into its segments; matching walks the subject's segments
//! once, without allocating.

use crate::{keys::validate_name, Error, Result};

/// One compiled segment of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// This exact text.
    Literal(String),
    /// `*`: any one segment.
    One,
    /// `>`: one or more segments, to the end.
    Rest,
}

/// A compiled subject pattern. Build it with [`SubjectPattern::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectPattern {
    text: String,
    segments: Vec<Segment>,
}

/// Checks an event's subject (topic) against the subject rule.
///
/// Errors: [`Error::InvalidName`] (`what` = `"topic"`) naming the rule that failed.
///
/// ```
/// use pulse::streaming::validate_subject;
/// assert!(validate_subject("orders.eu.created").is_ok());
/// assert!(validate_subject("orders..created").is_err()); // empty segment
/// assert!(validate_subject("orders.>").is_err()); // wildcards only in patterns
/// ```
pub fn validate_subject(subject: &str) -> Result<()> {
    validate_name("topic", subject)?;
    for segment in subject.split('.') {
        if segment.is_empty() {
            return Err(Error::invalid_name(
                "topic",
                subject,
                "a subject's segments (between dots) must not be empty",
            ));
        }
        if segment.contains('>') {
            return Err(Error::invalid_name(
                "topic",
                subject,
                "`>` is a pattern wildcard and cannot be part of a subject",
            ));
        }
    }
    Ok(())
}

impl SubjectPattern {
    /// Compiles `pattern`.
    ///
    /// Errors: [`Error::InvalidArgument`] naming the rule that failed (empty segment, `*` or
    /// `>` inside a segment, `>` not last, or a character no name may hold).
    ///
    /// ```
    /// use pulse::streaming::SubjectPattern;
    /// let p = SubjectPattern::new("orders.*.created")?;
    /// assert!(p.matches("orders.eu.created"));
    /// assert!(!p.matches("orders.eu.west.created"));
    /// let all = SubjectPattern::new("orders.>")?;
    /// assert!(all.matches("orders.eu.west.created"));
    /// assert!(!all.matches("orders"));
    /// # Ok::<(), pulse::Error>(())
    /// ```
    pub fn new(pattern: &str) -> Result<SubjectPattern> {
        let bad = |why: &str| Error::InvalidArgument(format!("subject pattern {pattern:?}: {why}"));
        // The name rule, with the two wildcards allowed where they may stand.
        let without_wildcards = pattern.replace('*', "w");
        validate_name("subject pattern", &without_wildcards).map_err(|e| match e {
            Error::InvalidName { reason, .. } => bad(reason),
            other => other,
        })?;
        let parts: Vec<&str> = pattern.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "" => return Err(bad("segments (between dots) must not be empty")),
                "*" => Segment::One,
                ">" if i + 1 == parts.len() => Segment::Rest,
                ">" => return Err(bad("`>` may only be the last segment")),
                p if p.contains('*') || p.contains('>') => {
                    return Err(bad("`*` and `>` must be whole segments"))
                }
                p => Segment::Literal(p.to_owned()),
            };
            segments.push(segment);
        }
        Ok(SubjectPattern {
            text: pattern.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `subject` matches.
    pub fn matches(&self, subject: &str) -> bool {
        let mut parts = subject.split('.');
        for segment in &self.segments {
            let part = parts.next();
            match (segment, part) {
                (_, None) => return false,
                (Segment::Rest, Some(_)) => return true,
                (Segment::One, Some(_)) => {}
                (Segment::Literal(l), Some(p)) if l == p => {}
                (Segment::Literal(_), Some(_)) => return false,
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SubjectPattern {
        SubjectPattern::new(s).unwrap()
    }

    #[test]
    fn wildcards_match_per_segment() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders", "orders", true),
            ("orders", "orders.eu", false),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders", false),
            ("orders.*", "orders.eu.created", false),
            ("*.eu.*", "orders.eu.created", true),
            ("*.eu.*", "orders.us.created", false),
            ("orders.>", "orders.eu", true),
            ("orders.>", "orders.eu.west.created", true),
            // The edge cases: `>` needs at least one segment.
            ("orders.>", "orders", false),
            (">", "orders", true),
            (">", "a.b.c", true),
            ("*.>", "a", false),
            ("*.>", "a.b", true),
            ("orders.eu", "orders.eu2", false),
            ("orders.eu", "orders", false),
        ];
        for (pattern, subject, want) in cases {
            assert_eq!(p(pattern).matches(subject), *want, "{pattern} ~ {subject}");
        }
    }

    #[test]
    fn one_rule_with_errors_that_say_which() {
        for (bad, why) in [
            ("", "empty"),
            ("a..b", "empty"),
            (".a", "empty"),
            ("a.", "empty"),
            ("a.>.b", "last"),
            ("a*", "whole"),
            ("a.b>", "whole"),
            ("a b", "whitespace"),
            ("a.{b}", "{"),
        ] {
            match SubjectPattern::new(bad) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(why), "{bad:?}: {m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        for bad in ["", "a..b", ".a", "a.", "a.>", "a.*", "a b", "a>b"] {
            assert!(
                matches!(
                    validate_subject(bad),
                    Err(Error::InvalidName { what: "topic", .. })
                ),
                "{bad:?}"
            );
        }
        for good in ["orders", "orders.eu.created", "a:b.c-d_e", "ü.1"] {
            validate_subject(good).unwrap();
            assert!(p(good).matches(good));
        }
    }
}
