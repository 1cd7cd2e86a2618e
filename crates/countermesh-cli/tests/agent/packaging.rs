//! Keeps `packaging/` from drifting away from the binary: every flag the compose file,
//! the systemd unit and the Dockerfile pass, and every `COUNTERMESH_*` variable they
//! set, must be one the built `countermesh` documents in its `--help`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::support::command;

/// `text` without its comment lines (`#` first), whose example commands are not what
/// the files pass to the agent.
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn packaging_file(name: &str) -> anyhow::Result<(PathBuf, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging")
        .join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok((path, without_comments(&text)))
}

/// `countermesh ARGS... --help`'s output.
fn help(args: &[&str]) -> anyhow::Result<String> {
    let output = command().args(args).arg("--help").output()?;
    anyhow::ensure!(
        output.status.success(),
        "countermesh {args:?} --help failed"
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Every `--long-flag` in `text` (a `=value` or `,` after it is not part of it).
fn flags(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '[' | ']' | ';'))
        .filter_map(|word| word.strip_prefix("--"))
        .map(|flag| flag.split(['=', ',']).next().unwrap_or_default().to_owned())
        .filter(|flag| {
            !flag.is_empty()
                && flag
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .collect()
}

/// Every `COUNTERMESH_*` variable name in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| word.starts_with("COUNTERMESH_") && word.len() > "COUNTERMESH_".len())
        .map(str::to_owned)
        .collect()
}

/// The part of `text` from each `countermesh certs SUB` to the end of its shell command.
fn certs_commands<'a>(text: &'a str, sub: &str) -> Vec<&'a str> {
    let marker = format!("countermesh certs {sub}");
    text.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            &rest[..rest.find(';').unwrap_or(rest.len())]
        })
        .collect()
}

/// `forms` turns a used item into the texts `help` may show it as, one of which it must
/// contain (a flag with a space before it, so `--tls-ca` is not found inside
/// `--zookeeper-tls-ca`).
#[track_caller]
fn assert_documented(
    what: &str,
    used: &BTreeSet<String>,
    help: &str,
    forms: fn(&str) -> Vec<String>,
) {
    let missing: Vec<&String> = used
        .iter()
        .filter(|item| !forms(item).iter().any(|form| help.contains(form)))
        .collect();
    assert!(
        missing.is_empty(),
        "{what} uses {missing:?}, which `countermesh --help` does not document"
    );
}

#[test]
fn packaging_passes_only_options_the_agent_has() -> anyhow::Result<()> {
    let agent_help = help(&["agent"])?;
    let (_, compose) = packaging_file("docker-compose.yml")?;
    let (_, unit) = packaging_file("countermesh.service")?;
    let (_, dockerfile) = packaging_file("Dockerfile")?;
    let (_, env) = packaging_file("countermesh.env.example")?;

    // The agents' flags: the compose file's `command:` lists and the unit's ExecStart,
    // with the certs job's shell commands checked against their own subcommands below.
    let mut agent_compose = compose.clone();
    for sub in ["init", "issue"] {
        for part in certs_commands(&compose, sub) {
            agent_compose = agent_compose.replace(part, "");
        }
    }
    let compose_flags = flags(&agent_compose);
    assert!(compose_flags.contains("seeds"), "{compose_flags:?}");
    assert_documented("docker-compose.yml", &compose_flags, &agent_help, |f| {
        vec![format!(" --{f} ")]
    });
    let exec_start: String = unit
        .lines()
        .skip_while(|line| !line.starts_with("ExecStart="))
        .take_while(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let unit_flags = flags(&exec_start);
    assert!(unit_flags.contains("data-dir"), "{unit_flags:?}");
    assert_documented("countermesh.service", &unit_flags, &agent_help, |f| {
        vec![format!(" --{f} ")]
    });

    // The certs job's commands against `certs init --help` and `certs issue --help`.
    for sub in ["init", "issue"] {
        let used: BTreeSet<String> = certs_commands(&compose, sub)
            .into_iter()
            .flat_map(flags)
            .collect();
        assert!(
            !used.is_empty(),
            "docker-compose.yml never runs certs {sub}"
        );
        let sub_help = help(&["certs", sub])?;
        assert_documented(
            &format!("docker-compose.yml (certs {sub})"),
            &used,
            &sub_help,
            |f| vec![format!(" --{f} ")],
        );
    }

    // Every environment variable any of them sets.
    for (what, text) in [
        ("docker-compose.yml", &compose),
        ("Dockerfile", &dockerfile),
        ("countermesh.env.example", &env),
        ("countermesh.service", &unit),
    ] {
        // clap shows `[env: NAME=value]`, or `[env: NAME]` for hidden values (the token).
        assert_documented(what, &variables(text), &agent_help, |v| {
            vec![format!("[env: {v}="), format!("[env: {v}]")]
        });
    }
    Ok(())
}

#[test]
fn flag_extraction_sees_every_form() {
    let found = flags("- --tls-ca=/x\n  --seeds 1,2 \"--resp\" [--data-dir] -- --Bad --ok2");
    let expected: BTreeSet<String> = ["tls-ca", "seeds", "resp", "data-dir", "ok2"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(found, expected);
    assert_eq!(
        variables("ENV COUNTERMESH_HTTP=0 COUNTERMESH_ x"),
        BTreeSet::from(["COUNTERMESH_HTTP".to_owned()])
    );
}
