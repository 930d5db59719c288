//! Who may publish and subscribe to what on the bus: one NATS user per service, allowed exactly
//! the subjects its service serves, calls and emits, and nothing of the other services'.
//!
//! This table is the one definition of those permissions. Two configurations are generated from
//! it: `deploy/nats/accounts.conf` (the split deployment; passwords from nats-server's
//! environment), checked against [`accounts_conf`] by a test of this crate, and the private
//! nats-server of `wharf up` (passwords generated under the data root). So `wharf up` runs every
//! service as its own user with the same rights as the split units.
//!
//! Every user in the `WHARF` account may publish to any inbox (`_INBOX.>`: replies, and both
//! directions of every stream, go to the peer's inbox) but subscribe only to its own inboxes
//! (`_INBOX.<client name>.>`, the prefix `connect.rs` sets), so no user reads another's replies
//! or streams. Calls are allowed endpoint by endpoint: the builder may ask a runtime node to run a
//! build step (`build.run`, `build.copy`, `build.export`) but not to create, exec into or remove a
//! container, and may ask registry-sync for a pull but not for a push, sync or login. JetStream
//! access is limited to the streams a service owns (the gateway's event history, the builder's
//! cache bucket). Events are published under the types a service reports only
//! (`wharf.v1.events.image.>` for image-store, ...).

use crate::container::{all_subject, node_subject, op, ANNOUNCE_SUBJECT};
use crate::subjects::{group, image_store, registry_sync, service_name, subject, EVENTS_ALL};

/// The client name `wharf sync` connects with; its inboxes are `_INBOX.wharf-sync.…`.
pub const SYNC_CLIENT_NAME: &str = "wharf-sync";

/// The NATS account every Wharf user belongs to (JetStream enabled).
pub const ACCOUNT: &str = "WHARF";
/// The system account and its one user, for `nats server ...` monitoring requests.
pub const SYSTEM_ACCOUNT: &str = "SYS";
pub const SYSTEM_USER: &str = "sys";

/// The users of the services, by the name `wharf <service>` runs as.
pub const GATEWAY: &str = "gateway";
pub const IMAGE_STORE: &str = "image-store";
pub const REGISTRY_SYNC: &str = "registry-sync";
pub const BUILDER: &str = "builder";
pub const RUNTIME: &str = "runtime";
/// `wharf sync`: registry-to-registry copies, nothing else.
pub const SYNC: &str = "sync";
/// An operator: service discovery, events, the JetStream API; no service endpoint.
pub const OPS: &str = "ops";

/// One NATS user of the `WHARF` account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: &'static str,
    /// What the user is for (a comment in the generated configuration).
    pub about: &'static str,
    /// Subjects (with NATS wildcards) the user may publish to.
    pub publish: Vec<String>,
    /// Subjects the user may subscribe to.
    pub subscribe: Vec<String>,
}

impl User {
    pub fn may_publish(&self, subject: &str) -> bool {
        self.publish.iter().any(|p| matches(p, subject))
    }

    pub fn may_subscribe(&self, subject: &str) -> bool {
        self.subscribe.iter().any(|p| matches(p, subject))
    }
}

const INBOX_ALL: &str = "_INBOX.>";
const SRV_ALL: &str = "$SRV.>";

/// The inboxes of a client connected with name `client` (`connect.rs` sets the prefix).
fn own_inbox(client: &str) -> String {
    format!("_INBOX.{client}.>")
}

fn events(kind: &str) -> String {
    format!("{}.events.{kind}.>", crate::subjects::PREFIX)
}

fn store(endpoints: &[&str]) -> Vec<String> {
    endpoints
        .iter()
        .map(|e| subject(group::IMAGE_STORE, e))
        .collect()
}

/// The JetStream API subjects of one stream, as async-nats uses them: the stream's info and
/// creation, message gets (direct or not), and consumers (create, info, delete, pull, acks
/// and flow control). Nothing of other streams, no stream listing, no deletion.
fn jetstream(stream: &str) -> Vec<String> {
    [
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.CREATE.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
        format!("$JS.ACK.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ]
    .into()
}

/// A key-value bucket: its stream's API and its keys.
fn bucket(name: &str) -> Vec<String> {
    let mut out = jetstream(&format!("KV_{name}"));
    out.push(format!("$KV.{name}.>"));
    out
}

/// Every user of the `WHARF` account, services first.
pub fn users() -> Vec<User> {
    let runtime_node = |operation: &str| node_subject("*", operation);
    let mut gateway_publish: Vec<String> = [
        group::IMAGE_STORE,
        group::REGISTRY_SYNC,
        group::BUILDER,
        group::RUNTIME,
    ]
    .iter()
    .map(|g| format!("{g}.>"))
    .collect();
    gateway_publish.push(INBOX_ALL.into());
    gateway_publish.extend(jetstream(crate::events::STREAM));

    let mut registry_sync_publish = store(&[
        image_store::BLOB_STAT,
        image_store::BLOB_READ,
        image_store::BLOB_LOCATE,
        image_store::BLOB_INGEST,
        image_store::BLOB_STAGING,
        image_store::BLOB_ADOPT,
        image_store::IMAGE_RESOLVE,
        image_store::IMAGE_LIST,
        image_store::IMAGE_COMMIT,
    ]);
    registry_sync_publish.extend([events("image"), INBOX_ALL.into()]);

    let mut builder_publish = store(&[
        image_store::BLOB_INGEST,
        image_store::BLOB_LOCATE,
        image_store::IMAGE_RESOLVE,
        image_store::IMAGE_COMMIT,
        image_store::IMAGE_TAG,
        image_store::IMAGE_LIST,
        image_store::IMAGE_DELETE,
    ]);
    builder_publish.extend([
        subject(group::REGISTRY_SYNC, registry_sync::PULL),
        runtime_node(op::BUILD_RUN),
        runtime_node(op::BUILD_COPY),
        runtime_node(op::BUILD_EXPORT),
        all_subject(op::PING),
        events("builder"),
        INBOX_ALL.into(),
    ]);
    builder_publish.extend(bucket(crate::build::CACHE_BUCKET));

    let mut runtime_publish = store(&[
        image_store::BLOB_READ,
        image_store::BLOB_LOCATE,
        image_store::BLOB_INGEST,
        image_store::IMAGE_RESOLVE,
        image_store::IMAGE_COMMIT,
    ]);
    runtime_publish.extend([
        ANNOUNCE_SUBJECT.into(),
        events("container"),
        events("network"),
        events("volume"),
        INBOX_ALL.into(),
    ]);
    runtime_publish.extend(bucket(crate::container::NAMES_BUCKET));

    vec![
        User {
            name: GATEWAY,
            about: "The Docker API gateway: calls every service, renders `docker events` from \
                    the event subjects and their JetStream history, follows runtime nodes' \
                    announcements.",
            publish: gateway_publish,
            subscribe: vec![
                format!("{}.>", group::GATEWAY),
                EVENTS_ALL.into(),
                ANNOUNCE_SUBJECT.into(),
                SRV_ALL.into(),
                own_inbox(service_name::GATEWAY),
            ],
        },
        User {
            name: IMAGE_STORE,
            about: "image-store: serves blobs and image metadata; calls no other service.",
            publish: vec![events("image"), INBOX_ALL.into()],
            subscribe: vec![
                format!("{}.>", group::IMAGE_STORE),
                SRV_ALL.into(),
                own_inbox(service_name::IMAGE_STORE),
            ],
        },
        User {
            name: REGISTRY_SYNC,
            about: "registry-sync: pull, push and sync; moves blobs into and out of image-store.",
            publish: registry_sync_publish,
            subscribe: vec![
                format!("{}.>", group::REGISTRY_SYNC),
                SRV_ALL.into(),
                own_inbox(service_name::REGISTRY_SYNC),
            ],
        },
        User {
            name: BUILDER,
            about: "builder: resolves FROM through image-store and registry-sync's pull, runs \
                    build steps on runtime nodes (build.run/copy/export only: no container \
                    endpoint), keeps the shared build cache in its key-value bucket.",
            publish: builder_publish,
            subscribe: vec![
                format!("{}.>", group::BUILDER),
                ANNOUNCE_SUBJECT.into(),
                SRV_ALL.into(),
                own_inbox(service_name::BUILDER),
            ],
        },
        User {
            name: RUNTIME,
            about: "runtime: one per container host, answering on \
                    wharf.v1.runtime.node.<node>.<op> and the broadcasts; reads layers from \
                    and commits layers to image-store; announces itself.",
            publish: runtime_publish,
            subscribe: vec![
                format!("{}.>", group::RUNTIME),
                SRV_ALL.into(),
                own_inbox(service_name::RUNTIME),
            ],
        },
        User {
            name: SYNC,
            about: "`wharf sync`: asks registry-sync for registry-to-registry copies, nothing \
                    else.",
            publish: vec![
                subject(group::REGISTRY_SYNC, registry_sync::SYNC),
                INBOX_ALL.into(),
            ],
            subscribe: vec![own_inbox(SYNC_CLIENT_NAME)],
        },
        User {
            name: OPS,
            about: "An operator, for `nats micro ls|info|stats`, `nats sub 'wharf.v1.events.>'` \
                    and `nats kv ls`: discovery, events and the JetStream API; no service \
                    subjects.",
            publish: vec![SRV_ALL.into(), INBOX_ALL.into(), "$JS.API.>".into()],
            subscribe: vec![EVENTS_ALL.into(), INBOX_ALL.into()],
        },
    ]
}

/// The user named `name`.
pub fn user(name: &str) -> Option<User> {
    users().into_iter().find(|u| u.name == name)
}

/// The user each service (`wharf <service>`) connects as.
pub fn user_of_service(service: &str) -> Option<&'static str> {
    Some(match service {
        "gateway" => GATEWAY,
        "image-store" => IMAGE_STORE,
        "registry-sync" => REGISTRY_SYNC,
        "builder" => BUILDER,
        "runtime" => RUNTIME,
        _ => return None,
    })
}

/// Every user name, the system account's included.
pub fn user_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = users().iter().map(|u| u.name).collect();
    names.push(SYSTEM_USER);
    names
}

/// The environment variable deploy/nats/accounts.conf reads `user`'s password from
/// (`WHARF_NATS_IMAGE_STORE_PASSWORD`).
pub fn password_variable(user: &str) -> String {
    format!(
        "WHARF_NATS_{}_PASSWORD",
        user.to_ascii_uppercase().replace('-', "_")
    )
}

/// Whether the NATS subject pattern `pattern` (`*` one token, `>` the rest) matches `subject`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

const HEADER: &str = "\
# Wharf's NATS users and what each may publish and subscribe to.
#
# GENERATED from shared/src/permissions.rs, which `wharf up` uses for its private nats-server too:
# change the table there, then regenerate this file with
#   WHARF_WRITE_ACCOUNTS_CONF=1 cargo test -p wharf-bus accounts_conf
#
# One NATS account (WHARF) holds one user per service; each user's permissions allow exactly the
# subjects its service serves, calls and emits. Separate NATS accounts per service would need
# exports/imports for every subject and for _INBOX replies; per-user permissions in one account
# give the same protection with nats-server 2.9 and no operator/JWT setup.
#
# Passwords are read from the environment of nats-server (see wharf-nats.service and
# /etc/wharf/nats-server.env): a value may be plain text or a bcrypt hash ($2a$...), which
# `nats server passwd` or `htpasswd -nbBC 11 \"\" PASSWORD | cut -c2-` produce. The services get the
# plain password through WHARF_NATS_PASSWORD in their own env file. To use nkeys instead, replace
# `user`/`password` of an entry with `nkey: U...` (the public key) and give the service the seed file
# with --nats-nkey / WHARF_NATS_NKEY; docs/deploy.md shows both.
#
# Subjects:
#   _INBOX.>        replies to requests, and both directions of every stream (stream.rs: data,
#                   credit, heartbeat, cancel, end, error and result frames go to client inboxes).
#                   Each client's inboxes live under its own prefix (_INBOX.wharf-<service>.,
#                   set in shared/src/connect.rs), so a service may publish to any inbox (to answer)
#                   but subscribe only to its own: no service can read another's replies.
#   $SRV.>          the NATS service API: each instance answers PING/INFO/STATS discovery requests.
#   wharf.v1.<service>.<endpoint>, wharf.v1.runtime.node.*.<op>
#                   the endpoints a service calls, one by one (the gateway calls them all).
#   wharf.v1.events.<type>.>  the events a service reports.
#   $JS.API.STREAM|CONSUMER|DIRECT....<stream>, $JS.ACK/$JS.FC.<stream>, $KV.<bucket>.>
#                   JetStream, for the streams a service owns only: the gateway's event history
#                   (WHARF_EVENTS), the builder's build cache (bucket wharf_build_cache), the
#                   runtime nodes' container names (bucket wharf_container_names).
";

fn quoted(items: &[String], indent: &str) -> String {
    items.iter().map(|s| format!("{indent}\"{s}\"\n")).collect()
}

fn wrap_comment(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + 2 + line.len() + 1 + word.len() > 100 {
            out.push_str(&format!("{indent}# {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{indent}# {line}\n"));
    }
    out
}

/// The `accounts` block (and `system_account`) of a nats-server configuration, with each user's
/// `password:` value as `password` renders it: `$WHARF_NATS_GATEWAY_PASSWORD` for a variable
/// read from the environment, `"…"` for a literal.
pub fn accounts_block(password: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    out.push_str("accounts {\n");
    out.push_str(&format!(
        "  {ACCOUNT} {{\n    jetstream: enabled\n\n    users: [\n"
    ));
    for (i, u) in users().iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&wrap_comment(u.about, "      "));
        out.push_str("      {\n");
        out.push_str(&format!("        user: {}\n", u.name));
        out.push_str(&format!("        password: {}\n", password(u.name)));
        out.push_str("        permissions: {\n");
        out.push_str("          publish: {\n            allow: [\n");
        out.push_str(&quoted(&u.publish, "              "));
        out.push_str("            ]\n          }\n");
        out.push_str("          subscribe: {\n            allow: [\n");
        out.push_str(&quoted(&u.subscribe, "              "));
        out.push_str("            ]\n          }\n");
        out.push_str("        }\n      }\n");
    }
    out.push_str("    ]\n  }\n\n");
    out.push_str("  # The system account, for `nats server ...` monitoring requests.\n");
    out.push_str(&format!(
        "  {SYSTEM_ACCOUNT} {{\n    users: [\n      {{ user: {SYSTEM_USER}, password: {} }}\n    ]\n  }}\n",
        password(SYSTEM_USER)
    ));
    out.push_str("}\n");
    out.push_str(&format!("system_account: {SYSTEM_ACCOUNT}\n"));
    out
}

/// `deploy/nats/accounts.conf`: the users with their passwords read from nats-server's
/// environment.
pub fn accounts_conf() -> String {
    let mut out = HEADER.to_string();
    out.push('\n');
    out.push_str(&accounts_block(&|user| {
        format!("${}", password_variable(user))
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(name: &str) -> User {
        user(name).unwrap()
    }

    #[test]
    fn accounts_conf_is_generated_from_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/accounts.conf");
        let generated = accounts_conf();
        if std::env::var_os("WHARF_WRITE_ACCOUNTS_CONF").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap();
        assert!(
            on_disk == generated,
            "deploy/nats/accounts.conf differs from shared/src/permissions.rs: regenerate it with \
             WHARF_WRITE_ACCOUNTS_CONF=1 cargo test -p wharf-bus accounts_conf"
        );
    }

    #[test]
    fn subject_patterns_match_as_nats_matches_them() {
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.b.d.c"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("$SRV.>", "$SRV.PING"));
        assert!(!matches("a.b", "a.bc"));
    }

    #[test]
    fn the_builder_drives_build_steps_only() {
        let b = u(BUILDER);
        for allowed in [
            "wharf.v1.runtime.node.n1.build.run",
            "wharf.v1.runtime.node.n1.build.copy",
            "wharf.v1.runtime.node.n1.build.export",
            "wharf.v1.runtime.all.node.ping",
            "wharf.v1.registry-sync.pull",
            "wharf.v1.image-store.image.commit",
            "wharf.v1.events.builder.prune",
            "$KV.wharf_build_cache.abc",
            "$JS.API.STREAM.INFO.KV_wharf_build_cache",
            "$JS.API.DIRECT.GET.KV_wharf_build_cache.$KV.wharf_build_cache.abc",
            "_INBOX.wharf-gateway.x.build-context",
        ] {
            assert!(b.may_publish(allowed), "{allowed}");
        }
        for refused in [
            "wharf.v1.runtime.node.n1.container.create",
            "wharf.v1.runtime.node.n1.container.start",
            "wharf.v1.runtime.node.n1.exec.create",
            "wharf.v1.runtime.node.n1.container.archive.put",
            "wharf.v1.runtime.node.n1.container.archive.get",
            "wharf.v1.runtime.node.n1.volume.create",
            "wharf.v1.runtime.all.container.prune",
            "wharf.v1.runtime.announce",
            "wharf.v1.registry-sync.push",
            "wharf.v1.registry-sync.sync",
            "wharf.v1.registry-sync.login",
            "wharf.v1.image-store.image.load",
            "wharf.v1.builder.build",
            "wharf.v1.events.container.die",
            "$JS.API.STREAM.DELETE.WHARF_EVENTS",
            "$JS.API.STREAM.DELETE.KV_wharf_build_cache",
            "$JS.API.STREAM.LIST",
            "$KV.other.x",
        ] {
            assert!(!b.may_publish(refused), "{refused}");
        }
    }

    #[test]
    fn only_runtime_nodes_hold_container_names() {
        for user in users() {
            let may = user.may_publish("$KV.wharf_container_names.web")
                && user.may_publish("$JS.API.STREAM.INFO.KV_wharf_container_names");
            assert_eq!(may, user.name == RUNTIME, "{}", user.name);
        }
        assert!(!u(RUNTIME).may_publish("$KV.wharf_build_cache.abc"));
    }

    #[test]
    fn only_the_gateway_drives_containers_and_registry_logins() {
        for user in users() {
            let may = user.may_publish("wharf.v1.runtime.node.n1.container.create")
                || user.may_publish("wharf.v1.runtime.node.n1.exec.create")
                || user.may_publish("wharf.v1.registry-sync.login")
                || user.may_publish("wharf.v1.registry-sync.push");
            assert_eq!(may, user.name == GATEWAY, "{}", user.name);
        }
    }

    #[test]
    fn services_answer_on_their_own_subjects_and_read_only_their_own_inboxes() {
        let own = [
            (GATEWAY, "wharf.v1.gateway.health", "wharf-gateway"),
            (
                IMAGE_STORE,
                "wharf.v1.image-store.blob.read",
                "wharf-image-store",
            ),
            (
                REGISTRY_SYNC,
                "wharf.v1.registry-sync.pull",
                "wharf-registry-sync",
            ),
            (BUILDER, "wharf.v1.builder.build", "wharf-builder"),
            (
                RUNTIME,
                "wharf.v1.runtime.node.n1.build.run",
                "wharf-runtime",
            ),
        ];
        for (name, endpoint, client) in own {
            let user = u(name);
            assert!(user.may_subscribe(endpoint), "{name}: {endpoint}");
            assert!(user.may_subscribe("$SRV.PING.x"), "{name}");
            assert!(
                user.may_subscribe(&format!("_INBOX.{client}.abc")),
                "{name}"
            );
            for (other, _, other_client) in own {
                if other != name {
                    let inbox = format!("_INBOX.{other_client}.abc");
                    assert!(!user.may_subscribe(&inbox), "{name} reads {other}'s inbox");
                }
            }
            assert!(!user.may_subscribe("_INBOX.abc"), "{name}");
        }
        let sync = u(SYNC);
        assert!(sync.may_publish("wharf.v1.registry-sync.sync"));
        assert!(!sync.may_publish("wharf.v1.registry-sync.pull"));
        assert!(sync.may_subscribe("_INBOX.wharf-sync.x"));
        assert!(!sync.may_subscribe("wharf.v1.events.image.pull"));
    }

    #[test]
    fn runtime_image_store_and_registry_sync_drive_no_other_service() {
        for name in [IMAGE_STORE, REGISTRY_SYNC, RUNTIME] {
            let user = u(name);
            for refused in [
                "wharf.v1.builder.build",
                "wharf.v1.runtime.node.n1.build.run",
                "wharf.v1.runtime.all.container.list",
                "wharf.v1.registry-sync.sync",
                "wharf.v1.image-store.image.delete",
                "$JS.API.STREAM.CREATE.X",
            ] {
                assert!(!user.may_publish(refused), "{name}: {refused}");
            }
        }
        assert!(u(RUNTIME).may_publish("wharf.v1.runtime.announce"));
        assert!(u(RUNTIME).may_publish("wharf.v1.events.container.start"));
        assert!(!u(RUNTIME).may_publish("wharf.v1.events.image.pull"));
        assert!(!u(IMAGE_STORE).may_publish("wharf.v1.image-store.blob.read"));
    }

    #[test]
    fn password_variables_are_upper_case_with_underscores() {
        assert_eq!(
            password_variable("image-store"),
            "WHARF_NATS_IMAGE_STORE_PASSWORD"
        );
        assert_eq!(password_variable("sys"), "WHARF_NATS_SYS_PASSWORD");
    }
}
