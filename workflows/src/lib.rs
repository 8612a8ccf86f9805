//! trailhub's workflows: the inventory file (TOML), its validation before any AWS call, and the
//! DAG of the onboarding workflow built from it (DESIGN.md, "The DAG of one run").

mod build;
mod errors;
pub mod init;
mod inventory;
mod migration;
mod names;

pub use build::{
    ARCHIVE, BACKFILL_WORKFLOW, LaidOut, StepKind, WORKFLOW_NAME, Workflow, step_context,
};
pub use errors::InventoryError;
pub use inventory::{Inventory, load, parse};
pub use migration::JournalMigration;
