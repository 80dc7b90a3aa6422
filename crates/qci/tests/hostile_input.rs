//! End-to-end: what a hostile tenant sends gets a clear error naming the field, changes
//! nothing, and does not hold up anybody else. Each case is a row of docs/security.md.

use std::path::Path;
use std::time::Duration;

use qci_testkit::Server;

const QCI: &str = env!("CARGO_BIN_EXE_qci");

/// POSTs a raw body as a group spec; answers the status and the JSON error body.
async fn post(s: &Server, body: Vec<u8>, content_type: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/container-groups", s.url))
        .bearer_auth(s.admin_key().unwrap())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

fn first_field(v: &serde_json::Value) -> String {
    format!(
        "{}: {}",
        v["fields"][0]["field"].as_str().unwrap_or("?"),
        v["fields"][0]["message"].as_str().unwrap_or("?")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_are_refused_naming_what_is_wrong() {
    let s = Server::start(Path::new(QCI)).await;
    let ok_container = "{name: a, image: 127.0.0.1:1/bb}";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "200 KB of nested flow brackets",
            format!("name: x\ncontainers: {}", "[".repeat(200_000)).into_bytes(),
            "spec: line 2 column 76: nested deeper than 64 levels",
        ),
        (
            "nested JSON",
            format!("{{\"name\":\"x\",\"containers\":{}", "[".repeat(100_000)).into_bytes(),
            "spec: line 1 column 88: nested deeper than 64 levels",
        ),
        (
            "trailing data after a JSON document",
            br#"{"name":"x","containers":[{"name":"a","image":"bb"}]} trailing"#.to_vec(),
            "spec: unexpected data after the JSON document",
        ),
        (
            "a YAML tag",
            b"name: x\ncontainers: [{name: a, image: !foo bb}]\n".to_vec(),
            "spec: line 2 column 31: YAML tags such as !foo are not supported",
        ),
        (
            "invalid UTF-8",
            b"name: x\ncontainers: [{name: a, image: \xff\xfe}]\n".to_vec(),
            "spec: line 2 column 31: not UTF-8",
        ),
        (
            "no name",
            format!("containers: [{ok_container}]\n").into_bytes(),
            "name: is required",
        ),
        (
            "no containers",
            b"name: x\n".to_vec(),
            "containers: is required",
        ),
        (
            "group memory past every size",
            format!("name: x\nmemory: 1000Ti\ncontainers: [{ok_container}]\n").into_bytes(),
            "memory: the group asks for",
        ),
        (
            "a volume over /",
            b"name: x\nvolumes: [{name: v, empty_dir: {}}]\ncontainers: [{name: a, image: bb, volume_mounts: [{name: v, mount_path: /}]}]\n".to_vec(),
            "containers[0].volume_mounts[0].mount_path: cannot be /",
        ),
        (
            "a volume over /proc",
            b"name: x\nvolumes: [{name: v, empty_dir: {}}]\ncontainers: [{name: a, image: bb, volume_mounts: [{name: v, mount_path: /proc}]}]\n".to_vec(),
            "containers[0].volume_mounts[0].mount_path: cannot be /proc",
        ),
        (
            "an empty command",
            b"name: x\ncontainers: [{name: a, image: bb, command: ['']}]\n".to_vec(),
            "containers[0].command[0]: must name the program",
        ),
        (
            "a config file name of 300 bytes",
            format!("name: x\nvolumes: [{{name: v, config_file: {{files: [{{path: {}, content: x}}]}}}}]\ncontainers: [{ok_container}]\n", "f".repeat(300)).into_bytes(),
            "volumes[0].config_file.files[0].path: a part of it is 300 bytes long",
        ),
        (
            "a config file 3000 levels deep",
            format!("name: x\nvolumes: [{{name: v, config_file: {{files: [{{path: {}, content: x}}]}}}}]\ncontainers: [{ok_container}]\n", vec!["d"; 3000].join("/")).into_bytes(),
            "volumes[0].config_file.files[0].path: 3000 levels deep",
        ),
        (
            "shm past half the memory",
            format!("name: x\ncpu: 0.25\nmemory: 1Gi\nshm_size: 2Gi\ncontainers: [{ok_container}]\n").into_bytes(),
            "shm_size: must be less than half the group's memory",
        ),
    ];
    for (what, body, want) in cases {
        let (status, v) = post(&s, body, "application/yaml").await;
        assert_eq!(status, 400, "{what}: {v}");
        let got = first_field(&v);
        assert!(got.starts_with(want), "{what}: {got} (wanted {want})");
    }

    // Too large: 413 with the limit, in JSON; and the CLI says the limit before sending.
    let big = format!(
        "name: x\ncontainers: [{ok_container}]\n# {}\n",
        "x".repeat(5 << 20)
    );
    let (status, v) = post(&s, big.clone().into_bytes(), "application/yaml").await;
    assert_eq!(status, 413, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("at most 4 MiB"),
        "{v}"
    );
    let (ok, _, err) = s.create("big", &big, &[]);
    assert!(!ok && err.contains("larger than 4 MiB"), "{err}");

    assert!(
        s.client.list_groups().await.unwrap().is_empty(),
        "something was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_hostile_body_does_not_hold_up_others() {
    let s = Server::start(Path::new(QCI)).await;
    // Several refused bodies at once, each as costly as the budgets allow, while another
    // tenant lists its groups.
    let unit = format!("{}{}", "[".repeat(60), "]".repeat(60));
    let heavy = format!("name: a\ncontainers: [{}]\n", vec![unit; 160].join(","));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = s.url.clone();
        let key = s.admin_key().unwrap();
        let body = heavy.clone();
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/container-groups"))
                .bearer_auth(key)
                .header("content-type", "application/yaml")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let listed = tokio::time::timeout(Duration::from_secs(5), s.client.list_groups()).await;
    assert!(listed.is_ok(), "qci ls waited on the hostile bodies");
    for t in tasks {
        assert_eq!(t.await.unwrap(), 400);
    }
}
