//! A listener served by file-based LDS, so a test can change the filter's
//! configuration in a running Envoy (a configuration reload): the bootstrap
//! from [`EnvoyOptions::bootstrap`] with its listener moved into `lds.json`
//! in a directory Envoy watches; [`FileLds::reload`] writes the new
//! listener beside it and renames it over, which Envoy picks up.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::envoy::EnvoyError;
use crate::{wait_until, Envoy, EnvoyOptions};

pub struct FileLds {
    dir: PathBuf,
    listener: Value,
    envoy: Envoy,
    reloads: u64,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl FileLds {
    /// Starts Envoy from `opts` with its listener over file-based LDS.
    pub fn start(opts: &EnvoyOptions) -> Result<FileLds, EnvoyError> {
        let mut bootstrap = opts.bootstrap()?;
        let listener = bootstrap["static_resources"]["listeners"][0].take();
        bootstrap["static_resources"]["listeners"] = json!([]);
        let dir = std::env::temp_dir().join(format!(
            "edge-auth-lds-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).map_err(|e| EnvoyError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("lds.json");
        bootstrap["dynamic_resources"] = json!({"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": path.to_string_lossy(), "watched_directory": {"path": dir.to_string_lossy()}}
        }});
        let lds = FileLds::write(&dir, &listener)?;
        fs::rename(&lds, &path).map_err(|e| EnvoyError(format!("cannot rename: {e}")))?;
        let envoy = Envoy::start_with_bootstrap(opts, &bootstrap)?;
        Ok(FileLds {
            dir,
            listener,
            envoy,
            reloads: 0,
        })
    }

    fn write(dir: &std::path::Path, listener: &Value) -> Result<PathBuf, EnvoyError> {
        let mut l = listener.clone();
        l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
        let tmp = dir.join("lds.json.tmp");
        fs::write(&tmp, json!({"resources": [l]}).to_string())
            .map_err(|e| EnvoyError(format!("cannot write {}: {e}", tmp.display())))?;
        Ok(tmp)
    }

    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// Replaces the filter's configuration with `plugin_config` and waits
    /// (up to 10 s) until Envoy has applied the new listener.
    pub fn reload(&mut self, plugin_config: &Value) -> Result<(), EnvoyError> {
        let before = self.envoy.try_stat("listener_manager.lds.update_success").unwrap_or(0);
        let filter = &mut self.listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0];
        filter["typed_config"]["config"]["configuration"]["value"] = json!(plugin_config.to_string());
        let tmp = FileLds::write(&self.dir, &self.listener)?;
        fs::rename(&tmp, self.dir.join("lds.json")).map_err(|e| EnvoyError(format!("cannot rename: {e}")))?;
        self.reloads += 1;
        let applied = wait_until(Duration::from_secs(10), || {
            self.envoy
                .try_stat("listener_manager.lds.update_success")
                .is_some_and(|n| n > before)
        });
        if applied {
            Ok(())
        } else {
            Err(EnvoyError(format!(
                "reload {} not applied: {}",
                self.reloads,
                self.envoy.log_tail(30)
            )))
        }
    }

    /// Bytes allocated by Envoy's allocator (admin `/memory`).
    pub fn allocated_bytes(&self) -> u64 {
        let m = self.envoy.admin_get("/memory").json();
        m["allocated"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

impl Drop for FileLds {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
