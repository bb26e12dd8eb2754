//! The plugin's log lines: plain lines for people by default, or drone-cache's `log_format`
//! (`logfmt`, `json`), filtered by `log_level`, as set by [`init`]; until then lines are plain and
//! nothing is filtered out.

use std::fmt::Display;
use std::sync::RwLock;

use chunkcache::plugin::settings::{LogFormat, LogLevel};

static CONFIG: RwLock<(LogLevel, LogFormat)> = RwLock::new((LogLevel::Debug, LogFormat::Plain));

/// Sets the level and format of the lines logged from now on.
pub fn init(level: LogLevel, format: LogFormat) {
    *CONFIG.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (level, format);
}

/// Logs an error.
pub fn error(message: impl Display) {
    emit(LogLevel::Error, &message.to_string());
}

/// Logs a warning.
pub fn warn(message: impl Display) {
    emit(LogLevel::Warn, &message.to_string());
}

/// Logs what the step did.
pub fn info(message: impl Display) {
    emit(LogLevel::Info, &message.to_string());
}

/// Logs detail for `log_level: debug`.
pub fn debug(message: impl Display) {
    emit(LogLevel::Debug, &message.to_string());
}

fn emit(level: LogLevel, message: &str) {
    let (max, format) = *CONFIG.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    if level > max {
        return;
    }
    let name = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    match format {
        LogFormat::Plain => match level {
            LogLevel::Info => eprintln!("{message}"),
            LogLevel::Warn => eprintln!("warning: {message}"),
            _ => eprintln!("{name}: {message}"),
        },
        LogFormat::Logfmt => eprintln!("level={name} msg={}", logfmt_quote(message)),
        LogFormat::Json => eprintln!("{}", serde_json::json!({ "level": name, "msg": message })),
    }
}

/// A logfmt value: bare when it needs no quoting, else quoted with `"` and `\` escaped.
fn logfmt_quote(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=' || c.is_control()) {
        return value.to_string();
    }
    let escaped: String = value
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            '\n' => vec!['\\', 'n'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        assert_eq!(logfmt_quote("restored"), "restored");
        assert_eq!(logfmt_quote("cache hit: \"k\""), "\"cache hit: \\\"k\\\"\"");
        assert_eq!(logfmt_quote("a\\b\nc"), "\"a\\\\b\\nc\"");
        assert_eq!(logfmt_quote(""), "\"\"");
    }
}
