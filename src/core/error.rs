//! One line for an error and its causes, the form every message of chunkcache takes: the CLI's
//! `error: …` line, the plugin's warnings, and the detail of a failed Azure container request.

use std::error::Error;

/// `error` and its causes (its `source()` chain) on one line, joined with `": "`. A cause whose
/// text the previous message already includes is left out: backend and HTTP errors often embed
/// their source in their own message.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
            previous = text;
        }
        cause = current.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    fn chain(texts: &[&'static str]) -> Layer {
        texts.iter().rev().fold(None, |source, text| Some(Layer { text, source: source.map(Box::new) })).unwrap()
    }

    #[test]
    fn causes_are_joined_and_repeats_of_the_previous_message_dropped() {
        assert_eq!(one_line(&chain(&["saving failed"])), "saving failed");
        assert_eq!(
            one_line(&chain(&["saving failed", "request failed: timeout", "timeout", "connection reset"])),
            "saving failed: request failed: timeout: connection reset"
        );
        // Only the previous message counts: an earlier one does not hide a cause.
        assert_eq!(one_line(&chain(&["a: x", "b", "x"])), "a: x: b: x");
    }

    #[test]
    fn anyhow_contexts_are_causes() {
        let err = anyhow::Error::new(chain(&["disk full"])).context("cannot write the manifest");
        assert_eq!(one_line(err.as_ref()), "cannot write the manifest: disk full");
    }
}
