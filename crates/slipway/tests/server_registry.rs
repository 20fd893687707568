//! `slipway server` serves the OCI registry under `/v2/` (the same routes as `slipway
//! registry`): a real dockerd pushes an image to it and skopeo reads it back.

use std::process::Command;

fn start(data: &std::path::Path) -> test_support::Listening {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
    command.args(["server", "--listen", "127.0.0.1:0", "--no-agent", "--data"]).arg(data);
    test_support::Listening::spawn(command)
}

#[test]
fn docker_pushes_to_the_servers_registry_and_skopeo_reads_it() {
    let docker = test_support::docker_host();
    let image = test_support::busybox_image();
    test_support::require_command("skopeo", "skopeo");
    let tmp = test_support::tempdir();
    let server = start(&tmp.path().join("data"));
    let target = format!("{}/base/busybox:1", server.addr);

    let run = |args: &[&str]| {
        let o = Command::new("docker").arg("-H").arg(&docker).args(args).output().expect("running docker");
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    };
    run(&["tag", &image, &target]);
    run(&["push", &target]);

    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{target}")])
        .output()
        .expect("running skopeo");
    assert!(inspect.status.success(), "skopeo: {}", String::from_utf8_lossy(&inspect.stderr));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("skopeo JSON");
    assert!(v["Digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{v}");
    assert!(tmp.path().join("data/registry/blobs").is_dir(), "blobs are kept under --data/registry");

    run(&["rmi", &target]);
    run(&["pull", &target]);
    run(&["rmi", &target]);
}
