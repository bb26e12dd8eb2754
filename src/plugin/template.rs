//! Cache-key templates (Go `text/template` syntax) rendered as drone-cache renders them. Work in progress.
