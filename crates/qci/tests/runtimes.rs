//! End-to-end: the runtime a group runs on. Groups name `runtime: runc | gvisor` or get the
//! server's `--default-runtime`; the operator's `--allowed-runtime` and what this qci and
//! machine can run are enforced, each refusal naming `runtime` with the reason; a group keeps
//! its runtime for life; `qci get` shows it.

use std::path::Path;

use qci_testkit::Server;

const QCI: &str = env!("CARGO_BIN_EXE_qci");

fn spec(name: &str, runtime: Option<&str>) -> String {
    let runtime = runtime
        .map(|r| format!("runtime: {r}\n"))
        .unwrap_or_default();
    format!(
        "name: {name}\nrestart_policy: Never\n{runtime}containers: [{{name: c, image: '127.0.0.1:9/none:1', image_pull_policy: Never}}]\n"
    )
}

fn field_error(e: qci_client::ClientError) -> String {
    match e {
        qci_client::ClientError::Api {
            status: 400,
            fields,
            ..
        } => {
            assert_eq!(fields.len(), 1, "{fields:?}");
            assert_eq!(fields[0].field, "runtime");
            fields[0].message.clone()
        }
        other => panic!("expected a 400 naming runtime, got {other}"),
    }
}

#[tokio::test]
async fn the_runtime_is_chosen_checked_and_kept() {
    let s = Server::start(Path::new(QCI)).await;
    // No runtime named: the server's default, written into the group.
    let g = s
        .client
        .create_group(&spec("plain", None))
        .await
        .expect("create");
    assert_eq!(g.spec.runtime, Some(qci_spec::ContainerRuntime::Runc));
    let (ok, out, err) = s.cli(&["get", "plain"]);
    assert!(ok, "{err}");
    assert!(out.contains("Runtime:   runc"), "{out}");
    // gVisor is refused with the reason (until this qci runs gVisor sandboxes), nothing made.
    let e = s
        .client
        .create_group(&spec("sandboxed", Some("gvisor")))
        .await
        .expect_err("gvisor accepted");
    let why = field_error(e);
    assert!(
        why.starts_with("gvisor is not available on this server"),
        "{why}"
    );
    assert!(s.client.get_group("sandboxed").await.is_err());
    // An unknown runtime is the spec's error.
    let e = s
        .client
        .create_group(&spec("odd", Some("kata")))
        .await
        .expect_err("kata accepted");
    assert!(e.to_string().contains("runtime"), "{e}");
    // A group keeps its runtime: naming another is refused; naming none keeps it.
    let e = s
        .client
        .update_group("plain", &spec("plain", Some("gvisor")))
        .await
        .expect_err("runtime changed");
    assert_eq!(
        field_error(e),
        "cannot change (it is runc); create a new group instead"
    );
    let g = s
        .client
        .update_group("plain", &spec("plain", None))
        .await
        .expect("update without a runtime");
    assert_eq!(g.spec.runtime, Some(qci_spec::ContainerRuntime::Runc));
}

/// The operator's choice: a default the server cannot honour stops it at start, with why.
#[test]
fn a_default_runtime_that_cannot_be_used_stops_the_server() {
    qci_testkit::require(&[("runc", "runc")]);
    let dir = tempfile::Builder::new()
        .prefix("qci-runtimes-")
        .tempdir_in(qci_testkit::test_root())
        .expect("a data dir");
    let port = qci_testkit::free_port().to_string();
    for (flags, want) in [
        (
            &["--allowed-runtime", "gvisor"][..],
            "--default-runtime runc: runc is not allowed on this server (it allows gvisor)",
        ),
        (
            &["--default-runtime", "gvisor"][..],
            "--default-runtime gvisor: gvisor is not available on this server",
        ),
        (
            &["--default-runtime", "kata"][..],
            "\"kata\" is not a runtime: runc or gvisor",
        ),
    ] {
        let out = std::process::Command::new(QCI)
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(flags)
            .output()
            .expect("running qci serve");
        assert!(!out.status.success(), "{flags:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
}
