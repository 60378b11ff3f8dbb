//! Adam (Kingma & Ba, 2015) over candle `Var`s: candle-core has gradients
//! but no optimiser.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

const BETA_FIRST: f64 = 0.9;
const BETA_SECOND: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// The moment estimates of a fixed list of variables.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Per variable, per element: the running mean of the gradient.
    first: Vec<Vec<f64>>,
    /// Per variable, per element: the running mean of its square.
    second: Vec<Vec<f64>>,
    steps: i32,
}

impl Adam {
    /// For variables of these element counts, in the order `step` gets
    /// them.
    pub fn new(element_counts: &[usize]) -> Self {
        Self {
            first: element_counts.iter().map(|n| vec![0.0; *n]).collect(),
            second: element_counts.iter().map(|n| vec![0.0; *n]).collect(),
            steps: 0,
        }
    }

    /// One update of `vars` (in the order given to [`Adam::new`]) down
    /// `grads`. A variable without a gradient (the loss does not depend on
    /// it) keeps its value and its moments.
    pub fn step(
        &mut self,
        vars: &[&Var],
        grads: &GradStore,
        learning_rate: f64,
    ) -> candle_core::Result<()> {
        debug_assert_eq!(vars.len(), self.first.len());
        self.steps = self.steps.saturating_add(1);
        let first_correction = 1.0 - BETA_FIRST.powi(self.steps);
        let second_correction = 1.0 - BETA_SECOND.powi(self.steps);
        for ((var, first), second) in vars.iter().zip(&mut self.first).zip(&mut self.second) {
            let Some(grad) = grads.get(var) else {
                continue;
            };
            // The weights are a few hundred numbers: updating them in plain
            // Rust costs less than a dozen tensor ops would.
            let grad: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            let mut weights: Vec<f32> = var.flatten_all()?.to_vec1()?;
            debug_assert_eq!(grad.len(), first.len());
            for (((weight, grad), first), second) in weights
                .iter_mut()
                .zip(grad)
                .zip(first.iter_mut())
                .zip(second.iter_mut())
            {
                let grad = f64::from(grad);
                *first = BETA_FIRST * *first + (1.0 - BETA_FIRST) * grad;
                *second = BETA_SECOND * *second + (1.0 - BETA_SECOND) * grad * grad;
                let update = learning_rate * (*first / first_correction)
                    / ((*second / second_correction).sqrt() + EPSILON);
                *weight = (f64::from(*weight) - update) as f32;
            }
            var.set(&Tensor::from_vec(weights, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn minimises_a_quadratic() {
        // (w - 3)² for each of two weights from 0: Adam moves about the
        // learning rate per step, so 0.1 × 200 steps is plenty.
        let device = Device::Cpu;
        let w = Var::zeros(2, DType::F32, &device).unwrap();
        let target = Tensor::new(&[3.0f32, -2.0], &device).unwrap();
        let mut adam = Adam::new(&[2]);
        for _ in 0..200 {
            let loss = (w.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            adam.step(&[&w], &loss.backward().unwrap(), 0.1).unwrap();
        }
        let w: Vec<f32> = w.to_vec1().unwrap();
        assert!(
            (w[0] - 3.0).abs() < 0.05 && (w[1] + 2.0).abs() < 0.05,
            "{w:?}"
        );
    }

    #[test]
    fn the_first_step_moves_each_weight_by_the_learning_rate() {
        // Bias correction makes the first update exactly lr · sign(grad).
        let device = Device::Cpu;
        let w = Var::new(&[1.0f32, 1.0], &device).unwrap();
        let scale = Tensor::new(&[5.0f32, -0.01], &device).unwrap();
        let loss = (w.as_tensor() * &scale).unwrap().sum_all().unwrap();
        let mut adam = Adam::new(&[2]);
        adam.step(&[&w], &loss.backward().unwrap(), 0.5).unwrap();
        let w: Vec<f32> = w.to_vec1().unwrap();
        assert!(
            (w[0] - 0.5).abs() < 1e-4 && (w[1] - 1.5).abs() < 1e-4,
            "{w:?}"
        );
    }
}
