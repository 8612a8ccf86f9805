//! `trailhub graph`: the DAG as text, DOT, Mermaid or SVG (through Graphviz), optionally colored
//! by a run's journaled state.

use super::common::{RunView, load_inventory, open_existing_state};
use crate::cli::{Cli, GraphFormat};
use crate::errors::{CliError, Outcome};
use crate::print::out;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use trailhub_engine::{Shape, render};
use trailhub_workflows::Workflow;

pub async fn graph(
    cli: &Cli,
    config: Option<&Path>,
    run: Option<&str>,
    format: GraphFormat,
) -> Result<Outcome, CliError> {
    let (shape, states) = match run {
        Some(id) => {
            let state = open_existing_state(cli).await?;
            let journal = &state.journal;
            let view = RunView::read(journal, Some(id))?;
            let states: BTreeMap<_, _> = view
                .records
                .into_iter()
                .map(|(k, v)| (k, v.state))
                .collect();
            (view.shape, Some(states))
        }
        None => {
            let path =
                config.ok_or_else(|| CliError::Usage("pass -c INVENTORY or --run ID".into()))?;
            let workflow =
                Workflow::new(load_inventory(path)?, Vec::new()).map_err(CliError::Usage)?;
            (Shape::from_record(&workflow.graph()?)?, None)
        }
    };
    let engine_format = match format {
        GraphFormat::Text => trailhub_engine::GraphFormat::Text,
        GraphFormat::Mermaid => trailhub_engine::GraphFormat::Mermaid,
        GraphFormat::Dot | GraphFormat::Svg => trailhub_engine::GraphFormat::Dot,
    };
    let text = render(&shape, engine_format, states.as_ref());
    if format == GraphFormat::Svg {
        out!("{}", svg(&text)?);
    } else {
        out!("{text}");
    }
    Ok(Outcome::Ok)
}

/// Renders DOT to SVG with Graphviz's `dot`.
pub fn svg(dot: &str) -> Result<String, CliError> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CliError::Environment(format!(
                "--format svg needs Graphviz's `dot`, which could not be started ({e}); install Graphviz \
                 (e.g. `apt-get install graphviz`), or use --format dot and render it elsewhere"
            ))
        })?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(dot.as_bytes())
        .map_err(|e| CliError::Environment(format!("cannot write to `dot`: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| CliError::Environment(format!("`dot` failed: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Environment(format!(
            "`dot` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
