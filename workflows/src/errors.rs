//! Errors of the inventory: every problem at once, each naming the key and the fix.

use std::path::PathBuf;

/// An inventory that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read inventory {path}: {source}; pass the inventory with -c FILE")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("inventory {origin} is not valid TOML: {message}")]
    Syntax {
        /// Where it came from.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The TOML is valid but its content is not.
    #[error("inventory {origin} has {} problem{}:\n{}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Where it came from.
        origin: String,
        /// Every problem, sorted by key.
        problems: Vec<String>,
    },
}
