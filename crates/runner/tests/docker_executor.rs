//! The Docker executor against the real dockerd that `scripts/test` starts (busybox image,
//! `--bridge=none --iptables=false`), and the CNCF distribution registry for pulls.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use futures::StreamExt;
use indexmap::IndexMap;
use runner::executor::docker::{DockerExecutor, DockerOptions, LABEL_RUN};
use runner::executor::{Command, ContainerSpec, ExecError, Executor, JobHost, JobSpec, Process};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

fn run_id(test: &str) -> String {
    format!("t{}-{test}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn executor(test: &str) -> DockerExecutor {
    DockerExecutor::new(DockerOptions {
        endpoint: Some(test_support::docker_host()),
        run_id: run_id(test),
        default_image: None,
    })
    .expect("connecting to the test dockerd")
}

async fn client() -> Docker {
    let host = test_support::docker_host();
    let path = host.strip_prefix("unix://").unwrap_or(&host).to_owned();
    Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION)
        .expect("test dockerd socket")
        .negotiate_version()
        .await
        .expect("test dockerd answers")
}

async fn is_podman(docker: &Docker) -> bool {
    let version = docker.version().await.expect("engine version");
    version.components.unwrap_or_default().iter().any(|c| c.name.contains("Podman"))
}

fn busybox() -> ContainerSpec {
    ContainerSpec { image: test_support::busybox_image(), ..Default::default() }
}

fn job(id: &str) -> JobSpec {
    JobSpec { job_id: id.to_owned(), mounts: Vec::new(), container: Some(busybox()), services: IndexMap::new() }
}

fn sh(script: &str) -> Command {
    Command {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: IndexMap::new(),
        cwd: PathBuf::from("/"),
    }
}

struct Output {
    stdout: String,
    stderr: String,
    status: ExitStatus,
}

/// Reads both streams to the end (concurrently) and waits for the exit status.
async fn finish(mut process: Box<dyn Process>) -> Output {
    let mut out = process.take_stdout().expect("stdout");
    let mut err = process.take_stderr().expect("stderr");
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let (ro, re) = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
    ro.expect("reading stdout");
    re.expect("reading stderr");
    let status = process.wait().await.expect("exit status");
    Output {
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
        status,
    }
}

async fn run(host: &dyn JobHost, command: Command) -> Output {
    finish(host.spawn(command).await.expect("spawn")).await
}

/// Containers and networks still labelled with this executor's run.
async fn leftovers(executor: &DockerExecutor) -> (Vec<String>, Vec<String>) {
    let docker = client().await;
    let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_RUN}={}", executor.run_id())])]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .expect("listing containers");
    let networks =
        docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await.expect("listing networks");
    (
        containers.into_iter().flat_map(|c| c.names.unwrap_or_default()).collect(),
        networks.into_iter().filter_map(|n| n.name).collect(),
    )
}

async fn assert_clean(executor: &DockerExecutor) {
    let (containers, networks) = leftovers(executor).await;
    assert!(containers.is_empty() && networks.is_empty(), "left behind: {containers:?} {networks:?}");
}

fn prepare_error(result: Result<Box<dyn JobHost>, ExecError>) -> String {
    match result {
        Ok(host) => panic!("prepare succeeded on {}", host.describe()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn exec_streams_stdout_stderr_and_exit_code() {
    let executor = executor("exit");
    let host = executor.prepare(job("build")).await.expect("prepare");
    assert_eq!(host.describe(), format!("docker:{}", test_support::busybox_image()));
    let out = run(host.as_ref(), sh("echo hi; echo err >&2; exit 3")).await;
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.status.code(), Some(3));
    let ok = run(host.as_ref(), sh("printf 'no newline'")).await;
    assert_eq!((ok.stdout.as_str(), ok.stderr.as_str(), ok.status.code()), ("no newline", "", Some(0)));
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn scripts_in_mounts_run_by_the_same_path_with_env_and_cwd() {
    let executor = executor("mounts");
    let dir = test_support::tempdir();
    let root = dir.path().canonicalize().expect("temp dir path");
    let work = root.join("work dir");
    std::fs::create_dir(&work).expect("work dir");
    let script = root.join("step.sh");
    std::fs::write(&script, "echo \"pwd=$(pwd) greeting=$GREETING\"\necho from-container > \"$OUT\"\nexit 7\n")
        .expect("writing the script");
    let mut spec = job("mounts");
    // A mount directory that does not exist yet is created.
    let cache = root.join("cache/not-yet");
    spec.mounts = vec![root.clone(), cache.clone()];
    let host = executor.prepare(spec).await.expect("prepare");

    let mut env = IndexMap::new();
    env.insert("GREETING".to_owned(), "hello world".to_owned());
    env.insert("OUT".to_owned(), root.join("out.txt").display().to_string());
    let out = run(
        host.as_ref(),
        Command { program: "sh".into(), args: vec!["-e".into(), script.display().to_string()], env, cwd: work.clone() },
    )
    .await;
    assert_eq!(out.stdout, format!("pwd={} greeting=hello world\n", work.display()), "stderr: {}", out.stderr);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        std::fs::read_to_string(root.join("out.txt")).expect("file written in the container"),
        "from-container\n"
    );

    assert!(cache.is_dir(), "{} was created", cache.display());
    let listed = run(host.as_ref(), sh(&format!("test -d '{}' && echo mounted", cache.display()))).await;
    assert_eq!(listed.stdout, "mounted\n");

    // The container's own environment (PATH) stays the base of every exec.
    let path = run(host.as_ref(), sh("echo $PATH")).await;
    assert!(!path.stdout.trim().is_empty(), "PATH is set in the container");
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn output_nobody_reads_does_not_stall_wait() {
    let executor = executor("undrained");
    let host = executor.prepare(job("build")).await.expect("prepare");
    // Far more than the in-memory pipes hold.
    let mut process =
        host.spawn(sh("head -c 4000000 /dev/zero; head -c 4000000 /dev/zero >&2; exit 4")).await.expect("spawn");
    assert_eq!(process.wait().await.expect("wait").code(), Some(4));
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn missing_program_reports_exit_127() {
    let executor = executor("missing");
    let host = executor.prepare(job("build")).await.expect("prepare");
    let out = run(host.as_ref(), Command { program: "no-such-program".into(), ..sh("") }).await;
    assert_eq!(out.status.code(), Some(127), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("no-such-program"), "{}", out.stderr);
    host.cleanup().await;
    assert_clean(&executor).await;
}

fn web_service(health: &str) -> ContainerSpec {
    ContainerSpec {
        entrypoint: Some(vec!["httpd".into()]),
        args: vec!["-f".into(), "-p".into(), "8080".into(), "-h".into(), "/etc".into()],
        options: Some(health.to_owned()),
        ..busybox()
    }
}

#[tokio::test]
async fn healthy_service_is_reachable_by_its_alias() {
    let executor = executor("svc");
    let mut spec = job("test");
    spec.services.insert(
        "web".into(),
        ContainerSpec {
            ports: vec!["127.0.0.1::8080".into()],
            ..web_service(
                "--health-cmd 'wget -q -O /dev/null http://127.0.0.1:8080/hostname' --health-interval 100ms \
                 --health-retries 100 --network-alias www -e MODE=test",
            )
        },
    );
    let host = executor.prepare(spec).await.expect("prepare");

    // prepare returned only after the engine reported the service healthy.
    let docker = client().await;
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{LABEL_RUN}={}", executor.run_id()), "slipway.role=service".to_owned()],
    )]);
    let services = docker
        .list_containers(Some(ListContainersOptions { filters: Some(filters), ..Default::default() }))
        .await
        .expect("listing");
    assert_eq!(services.len(), 1);
    let id = services[0].id.clone().expect("id");
    let info = docker.inspect_container(&id, None).await.expect("inspect");
    let health = info.state.and_then(|s| s.health).and_then(|h| h.status).map(|s| s.to_string());
    // Podman without systemd never runs health checks itself; the executor runs them there.
    if !is_podman(&docker).await {
        assert_eq!(health.as_deref(), Some("healthy"));
    }
    let env = info.config.and_then(|c| c.env).unwrap_or_default();
    assert!(env.contains(&"MODE=test".to_owned()), "{env:?}");

    // `ports:` publishes the service on the engine's host.
    let published = info
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|ports| ports.get("8080/tcp").cloned().flatten())
        .and_then(|bindings| bindings.into_iter().next())
        .and_then(|b| b.host_port)
        .expect("8080/tcp is published");
    let mut conn = tokio::net::TcpStream::connect(format!("127.0.0.1:{published}")).await.expect("connecting");
    tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /hostname HTTP/1.0\r\n\r\n").await.expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("response");
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");

    let out = run(
        host.as_ref(),
        sh("wget -q -O - http://web:8080/hostname && wget -q -O /dev/null http://www:8080/hostname"),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert!(!out.stdout.trim().is_empty());

    // A step container is on the same network.
    let step = host
        .run_container(ContainerSpec {
            entrypoint: Some(vec!["wget".into()]),
            args: vec!["-q".into(), "-O".into(), "-".into(), "http://web:8080/hostname".into()],
            ..busybox()
        })
        .await
        .expect("run_container");
    let step = finish(step).await;
    assert_eq!(step.status.code(), Some(0), "stderr: {}", step.stderr);
    // Both saw the service's /etc/hostname.
    assert_eq!(step.stdout.trim(), out.stdout.trim());
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn unhealthy_service_fails_prepare_with_its_health_log() {
    let executor = executor("unhealthy");
    let mut spec = job("test");
    spec.services.insert(
        "db".into(),
        ContainerSpec {
            entrypoint: Some(vec!["sleep".into()]),
            args: vec!["1000".into()],
            options: Some("--health-cmd 'echo db-not-ready; exit 1' --health-interval 100ms --health-retries 2".into()),
            ..busybox()
        },
    );
    let message = prepare_error(executor.prepare(spec).await);
    assert!(message.contains("service db is unhealthy"), "{message}");
    assert!(message.contains("db-not-ready"), "{message}");
    assert_clean(&executor).await;
}

#[tokio::test]
async fn service_that_exits_fails_prepare_with_its_output() {
    let executor = executor("exits");
    let mut spec = job("test");
    spec.services.insert(
        "cache".into(),
        ContainerSpec {
            entrypoint: Some(vec!["sh".into()]),
            args: vec!["-c".into(), "echo cannot-start >&2; exit 4".into()],
            options: Some("--health-cmd true --health-interval 1s".into()),
            ..busybox()
        },
    );
    let message = prepare_error(executor.prepare(spec).await);
    assert!(message.contains("service cache exited with code 4"), "{message}");
    assert!(message.contains("cannot-start"), "{message}");
    assert_clean(&executor).await;
}

#[tokio::test]
async fn bad_service_options_name_the_flag_and_create_nothing() {
    let executor = executor("badopts");
    let mut spec = job("test");
    spec.services
        .insert("db".into(), ContainerSpec { options: Some("--cpus 1 --volumes-from other".into()), ..busybox() });
    let message = prepare_error(executor.prepare(spec).await);
    assert!(message.contains("service db's options") && message.contains("`--volumes-from`"), "{message}");
    assert_clean(&executor).await;
}

/// Reads stdout up to the first line, so the test knows the process has started.
async fn first_line(
    process: &mut Box<dyn Process>,
) -> (String, BufReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>) {
    let mut reader = BufReader::new(process.take_stdout().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("reading stdout");
    (line, reader)
}

async fn processes(host: &dyn JobHost) -> String {
    run(host, sh("ps -o pid,args")).await.stdout
}

#[tokio::test]
async fn terminate_stops_the_whole_process_group() {
    let executor = executor("term");
    let host = executor.prepare(job("build")).await.expect("prepare");
    let mut process = host.spawn(sh("sleep 1000 & echo started; wait")).await.expect("spawn");
    let (line, mut rest) = first_line(&mut process).await;
    assert_eq!(line, "started\n");
    assert!(processes(host.as_ref()).await.contains("sleep 1000"));
    process.terminate();
    let mut tail = String::new();
    rest.read_to_string(&mut tail).await.expect("stdout ends");
    let status = process.wait().await.expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    let ps = processes(host.as_ref()).await;
    assert!(!ps.contains("sleep 1000"), "{ps}");
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn kill_stops_a_process_that_ignores_terminate() {
    let executor = executor("kill");
    let host = executor.prepare(job("build")).await.expect("prepare");
    let mut process = host.spawn(sh("trap '' TERM; sleep 1000 & echo started; wait")).await.expect("spawn");
    let (line, mut rest) = first_line(&mut process).await;
    assert_eq!(line, "started\n");
    process.terminate();
    process.kill();
    let mut tail = String::new();
    rest.read_to_string(&mut tail).await.expect("stdout ends");
    let status = process.wait().await.expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    // wait is idempotent.
    assert_eq!(process.wait().await.expect("wait again"), status);
    let ps = processes(host.as_ref()).await;
    assert!(!ps.contains("sleep 1000"), "{ps}");
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn run_container_streams_output_sees_mounts_and_is_removed() {
    let executor = executor("step");
    let dir = test_support::tempdir();
    let root = dir.path().canonicalize().expect("temp dir path");
    std::fs::write(root.join("input.txt"), "from-host\n").expect("input");
    let mut spec = job("build");
    spec.mounts = vec![root.clone()];
    let host = executor.prepare(spec).await.expect("prepare");
    let mut env = IndexMap::new();
    env.insert("WHO".to_owned(), "action".to_owned());
    let step = host
        .run_container(ContainerSpec {
            env,
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            args: vec!["cat input.txt; echo \"hello $WHO\" >&2; exit 5".into()],
            workdir: Some(root.clone()),
            ..busybox()
        })
        .await
        .expect("run_container");
    let out = finish(step).await;
    assert_eq!(out.stdout, "from-host\n");
    assert_eq!(out.stderr, "hello action\n");
    assert_eq!(out.status.code(), Some(5));
    // The step container is gone once its exit status is known.
    let (containers, _) = leftovers(&executor).await;
    assert_eq!(containers.len(), 1, "only the job container remains: {containers:?}");

    // terminate reaches a step container (PID 1 `sleep` has no TERM handler, so kill).
    let mut step = host
        .run_container(ContainerSpec {
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            args: vec!["echo started; exec sleep 1000".into()],
            ..busybox()
        })
        .await
        .expect("run_container");
    let (line, _rest) = first_line(&mut step).await;
    assert_eq!(line, "started\n");
    step.kill();
    let status = step.wait().await.expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn cleanup_is_idempotent_and_leaves_nothing() {
    let executor = executor("cleanup");
    let mut spec = job("matrix (1, linux)");
    spec.services.insert("web".into(), web_service("--health-cmd 'wget -q -O /dev/null http://127.0.0.1:8080/hostname' --health-interval 100ms --health-retries 100"));
    let host = executor.prepare(spec).await.expect("prepare");
    // A step container that is still running at cleanup.
    let _step = host
        .run_container(ContainerSpec { entrypoint: Some(vec!["sleep".into()]), args: vec!["1000".into()], ..busybox() })
        .await
        .expect("run_container");
    let (containers, networks) = leftovers(&executor).await;
    assert_eq!((containers.len(), networks.len()), (3, 1), "{containers:?} {networks:?}");
    host.cleanup().await;
    assert_clean(&executor).await;
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn missing_image_gives_a_clear_error() {
    let registry = test_support::distribution();
    let executor = executor("noimage");
    let image = format!("{}/slipway-test/does-not-exist:1", registry.addr);
    let mut spec = job("build");
    spec.container = Some(ContainerSpec {
        image: image.clone(),
        credentials: Some((registry.user.clone(), registry.password.clone())),
        ..Default::default()
    });
    // A service still waiting for its health does not hide (or delay) the pull error.
    spec.services.insert(
        "db".into(),
        ContainerSpec {
            entrypoint: Some(vec!["sleep".into()]),
            args: vec!["1000".into()],
            options: Some("--health-cmd false --health-interval 1s --health-retries 100".into()),
            ..busybox()
        },
    );
    let message = prepare_error(executor.prepare(spec).await);
    assert!(message.contains(&format!("pulling image {image}")), "{message}");
    assert!(message.contains("not found") || message.contains("manifest unknown"), "{message}");
    assert_clean(&executor).await;

    let executor = executor_without_image();
    let message = prepare_error(executor.prepare(JobSpec { container: None, ..job("build") }).await);
    assert!(message.contains("the job has no image"), "{message}");
}

fn executor_without_image() -> DockerExecutor {
    DockerExecutor::new(DockerOptions {
        endpoint: Some(test_support::docker_host()),
        run_id: run_id("none"),
        default_image: None,
    })
    .expect("executor")
}

#[tokio::test]
async fn absent_image_is_pulled_with_credentials() {
    let registry = test_support::distribution();
    let docker = client().await;
    let repo = format!("{}/slipway-test/busybox", registry.addr);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let image = format!("{repo}:{tag}");
    docker
        .tag_image(
            &test_support::busybox_image(),
            Some(TagImageOptions { repo: Some(repo.clone()), tag: Some(tag.clone()) }),
        )
        .await
        .expect("tagging");
    let credentials = DockerCredentials {
        username: Some(registry.user.clone()),
        password: Some(registry.password.clone()),
        serveraddress: Some(registry.addr.clone()),
        ..Default::default()
    };
    let mut push =
        docker.push_image(&repo, Some(PushImageOptions { tag: Some(tag.clone()), platform: None }), Some(credentials));
    while let Some(item) = push.next().await {
        let info = item.expect("pushing to the test registry");
        assert!(info.error_detail.is_none(), "push failed: {info:?}");
    }
    docker.remove_image(&image, None::<RemoveImageOptions>, None).await.expect("removing the local tag");

    // Without credentials the registry refuses.
    let executor = executor("pull");
    let mut spec = job("build");
    spec.container = Some(ContainerSpec { image: image.clone(), ..Default::default() });
    let message = prepare_error(executor.prepare(spec.clone()).await);
    assert!(message.contains(&format!("pulling image {image}")), "{message}");
    assert_clean(&executor).await;

    spec.container = Some(ContainerSpec {
        image: image.clone(),
        credentials: Some((registry.user.clone(), registry.password.clone())),
        ..Default::default()
    });
    let host = executor.prepare(spec).await.expect("prepare pulls the image");
    let out = run(host.as_ref(), sh("echo pulled")).await;
    assert_eq!(out.stdout, "pulled\n");
    host.cleanup().await;
    assert_clean(&executor).await;
    docker.remove_image(&image, None::<RemoveImageOptions>, None).await.expect("removing the pulled image");
}

#[tokio::test]
async fn unreachable_engine_and_bad_endpoints_are_clear_errors() {
    let bad = DockerExecutor::new(DockerOptions { endpoint: Some("ssh://somewhere".into()), ..DockerOptions::new() });
    let message = bad.map(|_| ()).expect_err("ssh is unsupported").to_string();
    assert!(message.contains("unsupported docker endpoint `ssh://somewhere`"), "{message}");

    let dir = test_support::tempdir();
    let socket = dir.path().join("nothing.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("socket");
    drop(_listener);
    let executor = DockerExecutor::new(DockerOptions {
        endpoint: Some(format!("unix://{}", socket.display())),
        ..DockerOptions::new()
    })
    .expect("client");
    let message = prepare_error(executor.prepare(job("build")).await);
    assert!(message.contains("connecting to the docker engine at unix://"), "{message}");
}

#[tokio::test]
async fn default_image_is_used_when_the_job_has_no_container() {
    let executor = DockerExecutor::new(DockerOptions {
        endpoint: Some(test_support::docker_host()),
        run_id: run_id("default"),
        default_image: Some(test_support::busybox_image()),
    })
    .expect("executor");
    let host = executor.prepare(JobSpec { container: None, ..job("build") }).await.expect("prepare");
    assert_eq!(host.describe(), format!("docker:{}", test_support::busybox_image()));
    host.cleanup().await;
    assert_clean(&executor).await;
}

#[tokio::test]
async fn standalone_containers_for_the_host_executor_see_mounts_and_are_removed() {
    let executor = executor("standalone");
    let dir = test_support::tempdir();
    let root = dir.path().canonicalize().expect("temp dir path");
    std::fs::write(root.join("input.txt"), "shared\n").expect("input");
    let spec = JobSpec { mounts: vec![root.clone()], container: None, ..job("host-job") };
    let process = executor
        .run_standalone(
            &spec,
            ContainerSpec {
                entrypoint: Some(vec!["sh".into(), "-c".into()]),
                args: vec![
                    "cat \"$1\"/input.txt; echo done > \"$1\"/output.txt; exit 2".into(),
                    "sh".into(),
                    root.display().to_string(),
                ],
                ..busybox()
            },
        )
        .await
        .expect("run_standalone");
    let out = finish(process).await;
    assert_eq!((out.stdout.as_str(), out.status.code()), ("shared\n", Some(2)), "stderr: {}", out.stderr);
    assert_eq!(std::fs::read_to_string(root.join("output.txt")).expect("written in the container"), "done\n");
    assert_clean(&executor).await;
}
