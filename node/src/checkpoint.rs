//! Checkpoints and the exported model on disk: what a server writes every
//! `spec.training.checkpointEvery` steps and at the end, and what it resumes from when it
//! starts with a checkpoint of its own (issue 15: a job whose every pod was killed resumes from
//! its checkpoints, not from step 0).
//!
//! Layout under `--checkpoint-dir DIR` (one folder per server, so servers may share a volume):
//!
//! ```text
//! DIR/<job>-server-<i>/step-00000600/model.npy        θ_600, 1-D float32 (numpy .npy)
//!                                    velocity.npy     the momentum buffer, same shape
//!                                    checkpoint.json  {"format", "job", "node", "step", "parameters", "model"}
//! DIR/<job>-server-<i>/final/model.npy                the final model (after the closing gather)
//!                            model.json               {"job", "node", "step", "accuracy", "model"}
//! ```
//!
//! `.npy` because every numerical stack reads it (`numpy.load`, `torch.from_numpy`,
//! `ndarray-npy`); the parameters are the model's flat vector, laid out as the model's
//! `Model` implementation in the core crate describes (layer by layer, weights then biases). A checkpoint folder is written under a temporary name and renamed, so
//! a crash mid-write leaves no half checkpoint; the newest [`KEEP`] are kept. A checkpoint that
//! does not load (corrupt, another job's or model's) is skipped with a warning and the next
//! older one is tried: a bad file never stops a server, it only costs progress.

use std::{
    fs,
    io::BufWriter,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use byzsgd_core::{
    model::ModelSpec,
    protocol::{NodeId, checkpoint::Checkpoint},
};
use ndarray::Array1;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde::{Deserialize, Serialize};

/// Checkpoints kept per server (older ones are deleted after a new one is written).
pub const KEEP: usize = 3;

/// `checkpoint.json`'s `format`: bumped when the layout changes.
const FORMAT: &str = "byzsgd-checkpoint/v1";

/// What `checkpoint.json` says about the vectors next to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    format: String,
    job: String,
    node: String,
    step: u64,
    parameters: usize,
    model: ModelSpec,
}

/// What `final/model.json` says about the exported model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedModel {
    /// The job.
    pub job: String,
    /// The server that wrote it.
    pub node: String,
    /// The step of the model (the job's `steps` when it finished).
    pub step: u64,
    /// Its test accuracy, when the server evaluated it.
    pub accuracy: Option<f32>,
    /// The model's architecture, as in the job spec.
    pub model: ModelSpec,
}

/// One server's checkpoint folder.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    job: String,
    node: NodeId,
    model: ModelSpec,
}

impl CheckpointStore {
    /// The folder of server `node` of `job` under `root` (created if missing).
    pub fn open(root: &Path, job: &str, node: NodeId, model: ModelSpec) -> anyhow::Result<Self> {
        let dir = root.join(format!("{job}-{node}"));
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the checkpoint folder {}", dir.display()))?;
        Ok(Self {
            dir,
            job: job.to_owned(),
            node,
            model,
        })
    }

    /// This server's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `checkpoint` (atomically: a temporary folder renamed into place), prunes older
    /// ones beyond [`KEEP`]; returns its folder.
    pub fn write(&self, checkpoint: &Checkpoint) -> anyhow::Result<PathBuf> {
        let target = self.dir.join(format!("step-{:08}", checkpoint.step));
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            job: self.job.clone(),
            node: self.node.to_string(),
            step: checkpoint.step,
            parameters: checkpoint.params.len(),
            model: self.model.clone(),
        };
        // The same step again (a resumed server re-reaching it): the newer write wins.
        replace_folder(&target, |folder| {
            write_npy(&folder.join("model.npy"), &checkpoint.params)?;
            write_npy(&folder.join("velocity.npy"), &checkpoint.velocity)?;
            write_json(&folder.join("checkpoint.json"), &manifest)
        })?;
        self.prune()?;
        Ok(target)
    }

    /// The newest checkpoint that loads and fits a job of `dimension` parameters and `steps`
    /// steps, with its folder; the ones that do not are named in a warning and skipped.
    pub fn latest(&self, dimension: usize, steps: u64) -> Option<(Checkpoint, PathBuf)> {
        for (_, folder) in self.checkpoints().into_iter().rev() {
            match self.load(&folder) {
                Ok(checkpoint) => match checkpoint.check(dimension, steps) {
                    Ok(()) => return Some((checkpoint, folder)),
                    Err(error) => {
                        tracing::warn!(checkpoint = %folder.display(), %error, "skipping a checkpoint");
                    }
                },
                Err(error) => {
                    tracing::warn!(checkpoint = %folder.display(), error = format!("{error:#}"), "skipping a checkpoint that does not load");
                }
            }
        }
        None
    }

    /// Loads the checkpoint in `folder`, checking it is this job's and server's.
    pub fn load(&self, folder: &Path) -> anyhow::Result<Checkpoint> {
        let text = fs::read_to_string(folder.join("checkpoint.json"))
            .with_context(|| format!("cannot read {}/checkpoint.json", folder.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}/checkpoint.json is not valid", folder.display()))?;
        if manifest.format != FORMAT {
            bail!("format `{}`, expected `{FORMAT}`", manifest.format);
        }
        if manifest.job != self.job || manifest.node != self.node.to_string() {
            bail!(
                "it belongs to {} of job {}, not {} of job {}",
                manifest.node,
                manifest.job,
                self.node,
                self.job
            );
        }
        if manifest.model != self.model {
            bail!("it holds another model than the job's `spec.model`");
        }
        let params = read_npy(&folder.join("model.npy"))?;
        let velocity = read_npy(&folder.join("velocity.npy"))?;
        Ok(Checkpoint {
            step: manifest.step,
            params,
            velocity,
        })
    }

    /// Writes the final model to `final/` (replacing an earlier export); returns the `.npy`.
    pub fn export(
        &self,
        params: &Array1<f32>,
        step: u64,
        accuracy: Option<f32>,
    ) -> anyhow::Result<PathBuf> {
        let target = self.dir.join("final");
        let exported = ExportedModel {
            job: self.job.clone(),
            node: self.node.to_string(),
            step,
            accuracy,
            model: self.model.clone(),
        };
        replace_folder(&target, |folder| {
            write_npy(&folder.join("model.npy"), params)?;
            write_json(&folder.join("model.json"), &exported)
        })?;
        Ok(target.join("model.npy"))
    }

    /// Checkpoint folders by step, oldest first.
    fn checkpoints(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let step = name.to_str()?.strip_prefix("step-")?.parse().ok()?;
                Some((step, entry.path()))
            })
            .collect();
        found.sort();
        found
    }

    fn prune(&self) -> anyhow::Result<()> {
        let checkpoints = self.checkpoints();
        let surplus = checkpoints.len().saturating_sub(KEEP);
        for (_, folder) in &checkpoints[..surplus] {
            fs::remove_dir_all(folder).with_context(|| {
                format!("cannot remove the old checkpoint {}", folder.display())
            })?;
        }
        Ok(())
    }
}

/// Fills a temporary sibling of `target` with `fill`, then puts it in `target`'s place (an
/// earlier `target` is replaced): a crash mid-write leaves at most a `.partial` folder, which
/// nothing reads.
fn replace_folder(
    target: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = target
        .file_name()
        .map_or_else(Default::default, |name| name.to_string_lossy());
    let temporary = target.with_file_name(format!(".{name}.partial"));
    if temporary.exists() {
        fs::remove_dir_all(&temporary)?;
    }
    fs::create_dir(&temporary).with_context(|| format!("cannot create {}", temporary.display()))?;
    fill(&temporary)?;
    if target.exists() {
        fs::remove_dir_all(target)?;
    }
    fs::rename(&temporary, target)
        .with_context(|| format!("cannot move {} into place", target.display()))
}

fn write_npy(path: &Path, vector: &Array1<f32>) -> anyhow::Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    vector
        .write_npy(BufWriter::new(file))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read_npy(path: &Path) -> anyhow::Result<Array1<f32>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Array1::<f32>::read_npy(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a 1-D float32 .npy file", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelSpec {
        serde_json::from_str(r#"{"kind": "logistic"}"#).unwrap()
    }

    fn checkpoint(step: u64) -> Checkpoint {
        Checkpoint {
            step,
            params: Array1::from(vec![step as f32, 1.0, -2.5]),
            velocity: Array1::from(vec![0.5, 0.0, 0.25]),
        }
    }

    fn store(root: &Path) -> CheckpointStore {
        CheckpointStore::open(root, "job", NodeId::server(1), model()).unwrap()
    }

    #[test]
    fn a_written_checkpoint_loads_back_and_the_newest_few_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        for step in [100, 200, 300, 400, 500] {
            store.write(&checkpoint(step)).unwrap();
        }
        let (latest, folder) = store.latest(3, 1500).unwrap();
        assert_eq!(latest, checkpoint(500));
        assert_eq!(folder, root.path().join("job-server-1/step-00000500"));
        let steps: Vec<u64> = store.checkpoints().iter().map(|(step, _)| *step).collect();
        assert_eq!(steps, [300, 400, 500]);
    }

    #[test]
    fn a_corrupt_or_foreign_checkpoint_is_skipped_for_an_older_good_one() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        store.write(&checkpoint(100)).unwrap();
        let corrupt = store.write(&checkpoint(200)).unwrap();
        fs::write(corrupt.join("model.npy"), b"not an npy file").unwrap();
        // Another server's checkpoint copied into this folder (a misconfigured volume).
        let other = CheckpointStore::open(root.path(), "job", NodeId::server(2), model()).unwrap();
        let foreign = other.write(&checkpoint(300)).unwrap();
        fs::rename(&foreign, store.dir().join("step-00000300")).unwrap();
        // A half-written one (the process died before the rename) is never even considered.
        fs::create_dir(store.dir().join(".step-00000400.partial")).unwrap();
        assert_eq!(store.latest(3, 1500).unwrap().0, checkpoint(100));
        // Another model size, or a job with fewer steps: nothing fits.
        assert!(store.latest(4, 1500).is_none());
        assert!(store.latest(3, 50).is_none());
    }

    #[test]
    fn the_exported_model_is_a_plain_npy_with_its_description() {
        let root = tempfile::tempdir().unwrap();
        let store = store(root.path());
        let path = store
            .export(&Array1::from(vec![1.0, 2.0]), 1500, Some(0.8))
            .unwrap();
        assert_eq!(path, root.path().join("job-server-1/final/model.npy"));
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x93NUMPY"), "npy magic");
        assert_eq!(read_npy(&path).unwrap(), Array1::from(vec![1.0, 2.0]));
        let described: ExportedModel =
            serde_json::from_str(&fs::read_to_string(path.with_file_name("model.json")).unwrap())
                .unwrap();
        assert_eq!((described.step, described.accuracy), (1500, Some(0.8)));
    }
}
