//! A throwaway NGINX (Debian's package) proxying to one upstream, with the
//! `location /` directives a test chooses: to put a real proxy, well or
//! badly configured, in front of tally.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::spawner::{self, ServerChild};
use super::{OwnedDir, free_port, log_tail, wait_for};

#[derive(Debug)]
pub struct Nginx {
    pub addr: SocketAddr,
    dir: OwnedDir,
    child: ServerChild,
}

impl Nginx {
    /// NGINX on 127.0.0.1 in front of `upstream`; `proxy` is what goes in
    /// `location /` beside `proxy_pass`, e.g. `proxy_set_header …;` lines.
    pub fn proxy(upstream: SocketAddr, proxy: &str) -> Nginx {
        let dir = OwnedDir::new("tally-nginx-");
        let root = dir.path();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let port = free_port();
        let conf = format!(
            "worker_processes 1;\n\
             pid {root}/nginx.pid;\n\
             error_log {root}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {root}/tmp/body;\n\
               proxy_temp_path {root}/tmp/proxy;\n\
               fastcgi_temp_path {root}/tmp/fastcgi;\n\
               uwsgi_temp_path {root}/tmp/uwsgi;\n\
               scgi_temp_path {root}/tmp/scgi;\n\
               upstream tally {{ server {upstream}; keepalive 16; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                   {proxy}\n\
                   proxy_pass http://tally;\n\
                 }}\n\
               }}\n\
             }}\n",
            root = root.display(),
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = root.join("nginx.log");
        let mut cmd = command(&conf_path, root);
        cmd.stdout(std::fs::File::create(&log).unwrap());
        let mut child = ServerChild::default();
        child.set(spawner::spawn(cmd).expect("start nginx (scripts/test installs it)"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(addr).ok()
        });
        assert!(
            up.is_some(),
            "nginx did not listen on {addr}: {}",
            log_tail(&root.join("error.log"), 2000) + &log_tail(&root.join("nginx.err"), 2000)
        );
        Nginx { addr, dir, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.kill();
    }
}

/// Writes `root/nginx.conf` with `scripts/render-nginx` (the project's
/// configuration, as the process stack renders it): listening on `listen`,
/// `upstreams` as the replicas, its pid, temp files and error log in
/// `root`, and its access log in `root/access.log` when `access_log`.
pub fn render(
    root: &Path,
    listen: SocketAddr,
    upstreams: &[SocketAddr],
    access_log: bool,
) -> PathBuf {
    let conf = root.join("nginx.conf");
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/render-nginx"));
    cmd.args(["--preset", "stack", "--listen", &listen.to_string()])
        .args(
            upstreams
                .iter()
                .flat_map(|u| ["--upstream".to_owned(), u.to_string()]),
        )
        .arg("--pid-file")
        .arg(root.join("nginx.pid"))
        .arg("--temp-dir")
        .arg(root.join("tmp"))
        .arg("--access-log")
        .arg(if access_log {
            root.join("access.log")
        } else {
            PathBuf::from("off")
        })
        .arg("--error-log")
        .arg(root.join("error.log"))
        .arg("-o")
        .arg(&conf);
    let out = cmd.output().expect("run scripts/render-nginx");
    assert!(
        out.status.success(),
        "render-nginx: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// NGINX in the foreground on `conf`, with `root` as its prefix and the
/// place of its logs: `error.log`, and `nginx.err` for what it writes
/// before it has read where its logs go.
pub fn command(conf: &Path, root: &Path) -> Command {
    let mut cmd = Command::new(nginx_binary());
    cmd.arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(root)
        .arg("-e")
        .arg(root.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("nginx.err")).expect("nginx's stderr file"));
    cmd
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}
