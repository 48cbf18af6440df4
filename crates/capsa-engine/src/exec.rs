//! exec: a new process in a running container (`capsa exec [-i] [-u USER] [--privileged]
//! [-w DIR] [-e K=V] ID CMD...`). The process starts from the container's own process spec
//! (so it inherits the container's five sets, as Docker's exec does); `-t` gets a pty; `-u` is resolved against
//! the container's /etc/passwd; `--privileged` gives every cap the host can grant in B/E/P
//! (never I or A). Must not change the container's record.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::record::Status;
use crate::status;
use capsa_runtime::container as rt;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub interactive: bool,
    pub tty: bool,
    pub user: Option<String>,
    pub privileged: bool,
    pub workdir: Option<String>,
    pub env: Vec<String>,
    pub command: Vec<String>,
}

impl Engine {
    /// Runs the command and returns its exit code.
    pub fn exec(&self, key: &str, o: &ExecOptions) -> Result<i32> {
        let r = self.store.find(key)?;
        if status::observe(&r) != Status::Running {
            return Err(Error::NotRunning(r.id));
        }
        let root = self.runtime();
        let base = rt::config(&root, &r.id).map_err(|e| Error::Runtime(e.to_string()))?;
        let user = match &o.user {
            Some(u) => {
                let rootfs = self.store.dir(&r.id).join("rootfs");
                let eu = crate::user::resolve(&rootfs, u)?;
                Some((eu.uid, Some(eu.gid)))
            }
            None => None,
        };
        let caps = if o.privileged {
            crate::caps::available()
                .iter()
                .filter(|c| c.is_known())
                .map(|c| c.oci_name())
                .collect()
        } else {
            Vec::new()
        };
        let overrides = rt::ExecOverrides {
            args: o.command.clone(),
            env: o.env.clone(),
            cwd: o.workdir.clone(),
            user,
            caps,
            tty: o.tty,
            no_new_privs: false,
        };
        let process = rt::exec_process(base.process().as_ref(), &overrides)
            .map_err(|e| Error::Runtime(e.to_string()))?;
        // With -t the runtime sends the pty master to our console socket; for its console
        // rules that is a "detached" exec, but the process is still our child and we wait.
        let console = if o.tty {
            Some(crate::tty::listen()?)
        } else {
            None
        };
        let opts = rt::ExecOptions {
            console_socket: console.as_ref().map(|c| c.path.clone()),
            detach: o.tty,
            ..rt::ExecOptions::default()
        };
        let pid =
            rt::exec(&root, &r.id, &process, &opts).map_err(|e| Error::Runtime(e.to_string()))?;
        let master = console.as_ref().map(|c| c.receive_master()).transpose()?;
        rt::foreground::block_signals().map_err(|e| Error::io("sigprocmask", "/", e))?;
        let terminal = master
            .map(|m| crate::tty::relay(m, o.interactive))
            .transpose()?;
        let code = rt::foreground::wait(pid).map_err(|e| Error::io("waitpid", "/", e));
        drop(terminal);
        code
    }
}
