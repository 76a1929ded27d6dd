//! What a server's checkpoint holds, as plain data: the step, the model θ_step and the
//! momentum buffer, taken before that step's gather (if it has one). Files and their format are
//! the runtime's (`byzsgd-node`'s `checkpoint` module); this module owns only the state and the
//! checks a loaded one must pass before a server resumes from it.

use ndarray::Array1;

/// A server's state at the start of step `step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The step the server resumes at (updates applied so far).
    pub step: u64,
    /// The model θ_step.
    pub params: Array1<f32>,
    /// The momentum buffer (zeros without momentum).
    pub velocity: Array1<f32>,
}

/// Why a checkpoint cannot be resumed from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Vectors of another length than the job's model.
    #[error(
        "the checkpoint's model has {found} parameters, the job's model {expected}: it belongs \
         to another model; point the node at this job's checkpoints"
    )]
    WrongDimension {
        /// The job's model size.
        expected: usize,
        /// The checkpoint's.
        found: usize,
    },
    /// NaN or ±inf in the model or momentum.
    #[error("the checkpoint holds non-finite values: it is corrupt")]
    NonFinite,
    /// A step past the job's end.
    #[error("the checkpoint is at step {step}, past the job's {steps} steps")]
    PastTheEnd {
        /// The checkpoint's step.
        step: u64,
        /// The job's steps.
        steps: u64,
    },
}

impl Checkpoint {
    /// Checks that a server of a job with `dimension` parameters and `steps` steps can resume
    /// from this checkpoint.
    pub fn check(&self, dimension: usize, steps: u64) -> Result<(), CheckpointError> {
        for vector in [&self.params, &self.velocity] {
            if vector.len() != dimension {
                return Err(CheckpointError::WrongDimension {
                    expected: dimension,
                    found: vector.len(),
                });
            }
        }
        if !self
            .params
            .iter()
            .chain(self.velocity.iter())
            .all(|value| value.is_finite())
        {
            return Err(CheckpointError::NonFinite);
        }
        if self.step > steps {
            return Err(CheckpointError::PastTheEnd {
                step: self.step,
                steps,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(step: u64, params: &[f32]) -> Checkpoint {
        Checkpoint {
            step,
            params: Array1::from(params.to_vec()),
            velocity: Array1::zeros(params.len()),
        }
    }

    #[test]
    fn a_checkpoint_of_the_job_passes() {
        assert_eq!(checkpoint(600, &[1.0, 2.0]).check(2, 1500), Ok(()));
        assert_eq!(checkpoint(1500, &[1.0, 2.0]).check(2, 1500), Ok(()));
    }

    #[test]
    fn another_model_corrupt_values_or_a_later_step_are_refused() {
        assert_eq!(
            checkpoint(600, &[1.0, 2.0, 3.0]).check(2, 1500),
            Err(CheckpointError::WrongDimension {
                expected: 2,
                found: 3
            })
        );
        assert_eq!(
            checkpoint(600, &[1.0, f32::NAN]).check(2, 1500),
            Err(CheckpointError::NonFinite)
        );
        let mut bad_velocity = checkpoint(600, &[1.0, 2.0]);
        bad_velocity.velocity[1] = f32::INFINITY;
        assert_eq!(bad_velocity.check(2, 1500), Err(CheckpointError::NonFinite));
        assert_eq!(
            checkpoint(1600, &[1.0, 2.0]).check(2, 1500),
            Err(CheckpointError::PastTheEnd {
                step: 1600,
                steps: 1500
            })
        );
    }
}
