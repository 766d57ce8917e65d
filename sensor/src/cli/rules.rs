//! `sensor rules`: the detection rules a daemon runs (built-in and Sigma), and updates of
//! its Sigma rule set.

use anyhow::Result;
use clap::Subcommand;

use super::{
    Output, antimalware::Common, connect, errors::status_error as status, output::json_line,
};
use crate::{out, proto};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate the Sigma rules in DIR (subdirectories included) and install them in
    /// place of the installed set, without a restart (a set with no usable rule is
    /// refused and the current one stays).
    Update {
        #[arg(long)]
        from: std::path::PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Every rule: built-in detections, then the Sigma rules loaded.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// One rule by id, with its Sigma source text.
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn rules(cmd: RulesCommand) -> Result<()> {
    match cmd {
        RulesCommand::Update { from, common } => {
            let from_dir = super::daemon_path(&from)?;
            let mut c = connect(&common.socket).await?;
            let info = c
                .update_rules(proto::UpdateRulesRequest { from_dir })
                .await
                .map_err(status)?
                .into_inner();
            match common.output {
                Output::Json => json_line(&info),
                Output::Text => {
                    out!("rule set version     {}", info.version);
                    out!("loaded from the set  {}", info.installed);
                    out!(
                        "sigma rules          {} in all, {} filtered out, {} skipped",
                        info.sigma_rules,
                        info.filtered,
                        info.skipped.len()
                    );
                    for s in &info.skipped {
                        out!("  SKIPPED {s}");
                    }
                    Ok(())
                }
            }
        }
        RulesCommand::List { common } => {
            let mut c = connect(&common.socket).await?;
            let list = c
                .list_rules(proto::ListRulesRequest {})
                .await
                .map_err(status)?
                .into_inner();
            for r in &list.rules {
                match common.output {
                    Output::Json => json_line(r)?,
                    Output::Text => out!(
                        "{:<36} {:<13} {:<9} {}{}",
                        r.id,
                        r.severity,
                        r.source,
                        if r.disabled { "[disabled] " } else { "" },
                        r.title
                    ),
                }
            }
            Ok(())
        }
        RulesCommand::Show { id, common } => {
            let mut c = connect(&common.socket).await?;
            let r = c
                .get_rule(proto::GetRuleRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            match common.output {
                Output::Json => json_line(&r),
                Output::Text => {
                    out!("id           {}", r.id);
                    out!("title        {}", r.title);
                    out!("severity     {}", r.severity);
                    out!("mitre        {}", r.mitre.join(", "));
                    out!(
                        "source       {}{}",
                        r.source,
                        if r.disabled { " (disabled)" } else { "" }
                    );
                    if !r.file.is_empty() {
                        out!("status       {}", r.status);
                        out!("log source   {}", r.logsource);
                        out!("file         {}", r.file);
                    }
                    out!("description  {}", r.description);
                    if !r.text.is_empty() {
                        out!("");
                        for line in r.text.lines() {
                            out!("{line}");
                        }
                    }
                    Ok(())
                }
            }
        }
    }
}
