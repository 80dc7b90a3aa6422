//! Builds the test busybox image from Debian's busybox-static and pushes it to a registry:
//! `qci-push-busybox 127.0.0.1:5000 busybox latest` (plain HTTP; for local registries).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [registry, repo, tag] = args.as_slice() else {
        eprintln!("usage: qci-push-busybox REGISTRY(HOST:PORT) REPOSITORY TAG");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let reference = rt.block_on(qci_testkit::push_busybox(registry, repo, tag));
    println!("{reference}");
}
