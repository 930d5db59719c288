//! Legacy links (`--link`), side by side with a private dockerd: the variables and hosts lines
//! a linking container gets, dockerd's refusals, inspect's `HostConfig.Links` (following a
//! rename), the link names `docker ps` lists, `docker rm --link`, and links on a user network
//! (an alias only the linking container resolves).

mod support;

use std::collections::BTreeMap;

use support::dockerd::side_by_side;
use support::DockerCli;

/// `HostConfig.Links`, sorted: dockerd lists them in its map's order, which varies.
fn links_of(d: &DockerCli, container: &str) -> String {
    let out = d.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", container]);
    match serde_json::from_str::<Option<Vec<String>>>(out.stdout.trim()) {
        Ok(Some(mut links)) => {
            links.sort();
            serde_json::to_string(&links).unwrap()
        }
        _ => out.stdout.trim().to_string(),
    }
}

/// What one engine shows, with addresses and IDs replaced by placeholders.
fn observe(d: &DockerCli, image: &str) -> BTreeMap<&'static str, String> {
    let mut seen = BTreeMap::new();
    let db = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "db",
            "--expose",
            "5432",
            "--expose",
            "7000-7002/udp",
            "-e",
            "SECRET=s",
            "-e",
            "PATH=/bin",
            image,
            "sleep",
            "600",
        ])
        .stdout
        .trim()
        .to_string();
    seen.insert(
        "missing child",
        d.refusal(&["run", "--rm", "--link", "nosuch:x", image, "true"]),
    );
    d.ok(&[
        "create", "--name", "web2", "--link", "db:dbal", image, "true",
    ]);
    d.ok(&["stop", "-t", "0", "db"]);
    seen.insert("stopped child", d.refusal(&["start", "web2"]));
    d.ok(&["start", "db"]);
    let ip2 = d.ip_on("db", "bridge");
    assert!(!ip2.is_empty());
    let out = d.ok(&[
        "run",
        "--name",
        "web",
        "--link",
        "db:dbal",
        "--link",
        "db",
        image,
        "sh",
        "-c",
        "env | sort; cat /etc/hosts",
    ]);
    let mut lines: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("DB") || l.contains(&ip2))
        .map(|l| l.replace(&ip2, "IP").replace(&db[..12], "ID"))
        .collect();
    lines.sort();
    seen.insert("env and hosts", lines.join("\n"));
    seen.insert("inspect", links_of(d, "web"));
    let names = d.ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        "name=db",
        "--format",
        "{{.Names}}",
    ]);
    let mut names: Vec<&str> = names.stdout.trim().split(',').collect();
    names.sort();
    seen.insert("ps names", names.join(","));
    d.ok(&["rm", "--link", "/web/dbal"]);
    seen.insert("after rm --link", links_of(d, "web"));
    seen.insert(
        "rm unknown link",
        d.refusal(&["rm", "--link", "/web/nosuch"]),
    );
    seen.insert("rm own name", d.refusal(&["rm", "--link", "db"]));
    d.ok(&["rename", "db", "db2"]);
    seen.insert("after rename", links_of(d, "web"));

    // On a user network: an alias for the linking container only.
    d.ok(&["network", "create", "un"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "un",
        image,
        "sleep",
        "600",
    ]);
    let c1 = d.ip_on("c1", "un");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "linker",
        "--network",
        "un",
        "--link",
        "c1:c1al",
        image,
        "sleep",
        "600",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "un",
        image,
        "sleep",
        "600",
    ]);
    let ask = |who: &str| {
        let out = d.run(&["exec", who, "busybox", "nslookup", "-type=a", "c1al"]);
        out.stdout.contains(&format!("Address: {c1}"))
    };
    seen.insert(
        "user network link",
        format!(
            "linker finds c1al: {}, other does: {}",
            ask("linker"),
            ask("other")
        ),
    );
    let out = d.ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.Links}} {{json .NetworkSettings.Networks.un.Links}}",
        "linker",
    ]);
    seen.insert("user network inspect", out.stdout.trim().to_string());
    d.ok(&["rm", "-f", "db2", "web", "web2", "c1", "linker", "other"]);
    d.ok(&["network", "rm", "un"]);
    seen
}

#[test]
fn legacy_links_give_what_dockerds_give() {
    let (theirs, ours) = side_by_side("links", observe);
    assert_eq!(ours, theirs);
    // What the comparison stands on.
    assert!(
        ours["env and hosts"].contains("DBAL_PORT_5432_TCP_ADDR=IP"),
        "{ours:?}"
    );
    assert!(ours["env and hosts"].contains("IP\tdbal ID db"), "{ours:?}");
    assert_eq!(ours["after rename"], r#"["/db2:/web/db"]"#);
    assert_eq!(
        ours["user network link"],
        "linker finds c1al: true, other does: false"
    );
}
