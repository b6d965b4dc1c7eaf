// The schedulers against diffusers 0.20.2 step by step: for every golden case, the timesteps, the
// initial noise sigma, and each step's scaled model input and next sample, from the same starting
// sample and the same model outputs the reference was fed.
import t from "tap";
import { golden, native, relL2 } from "./helpers/golden.mjs";

const TOLERANCE = 1e-4; // relative L2 per component (fixtures README)

const tensor = (tensors, name) => {
  const e = tensors[name];
  if (!e) throw new Error(`golden tensor ${name} is missing`);
  return { data: e.data, shape: e.shape };
};

for (const variant of ["sd1", "sd2"]) {
  const { json, tensors } = golden(variant);
  t.ok(json.schedulers.length > 0, `${variant} has scheduler cases`);
  for (const c of json.schedulers) {
    t.test(`${variant} ${c.name}`, async (t) => {
      const eps = [];
      for (let j = 0; tensors[`${c.name}.eps.${j}`]; j++) eps.push(tensor(tensors, `${c.name}.eps.${j}`));
      t.equal(eps.length, c.timesteps.length, "one model output per timestep in the fixture");
      const out = await native().components.scheduler({
        className: c.class,
        config: JSON.stringify(c.config),
        steps: c.steps,
        x0: tensor(tensors, `${c.name}.x0`),
        eps,
      });
      t.same(out.timesteps, c.timesteps, "timesteps");
      const sigmaErr = Math.abs(out.initNoiseSigma - c.init_noise_sigma) / Math.abs(c.init_noise_sigma);
      t.ok(sigmaErr < 1e-6, `init_noise_sigma ${out.initNoiseSigma} vs ${c.init_noise_sigma} (rel ${sigmaErr.toExponential(2)})`);
      t.equal(out.inputs.length, c.timesteps.length, "a scaled input per step");
      t.equal(out.outputs.length, c.timesteps.length, "a sample per step");
      let maxIn = 0;
      let maxOut = 0;
      for (let j = 0; j < Math.min(out.outputs.length, c.timesteps.length); j++) {
        const ein = relL2(out.inputs[j].data, tensors[`${c.name}.in.${j}`].data);
        const eout = relL2(out.outputs[j].data, tensors[`${c.name}.x.${j}`].data);
        t.ok(ein < TOLERANCE, `step ${j} scale_model_input relL2 ${ein.toExponential(2)}`);
        t.ok(eout < TOLERANCE, `step ${j} prev_sample relL2 ${eout.toExponential(2)}`);
        maxIn = Math.max(maxIn, ein);
        maxOut = Math.max(maxOut, eout);
      }
      t.comment(`${variant} ${c.name}: max relL2 input ${maxIn.toExponential(2)}, sample ${maxOut.toExponential(2)}`);
    });
  }
}

// Asserts a ERR_OVAM_CONFIG rejection whose message matches every pattern; prints the message.
async function rejectsConfig(t, className, config, patterns) {
  const x0 = { data: new Float32Array(4), shape: [1, 1, 2, 2] };
  const e = await native()
    .components.scheduler({ className, config: JSON.stringify(config), steps: 2, x0, eps: [] })
    .then(() => null, (err) => err);
  if (!t.ok(e, "rejects")) return;
  t.equal(e.code, "ERR_OVAM_CONFIG", `code (message: ${e.message})`);
  for (const p of patterns) t.match(e.message, p);
}

t.test("unknown scheduler classes and unimplemented config values are config errors", async (t) => {
  await rejectsConfig(t, "HeunDiscreteScheduler", {}, [/HeunDiscreteScheduler/, /PNDMScheduler/, /LMSDiscreteScheduler/]);
  const cases = [
    ["DDIMScheduler", { thresholding: true }, [/"thresholding"/, /true/]],
    ["DPMSolverMultistepScheduler", { algorithm_type: "sde-dpmsolver++" }, [/"algorithm_type"/, /sde-dpmsolver\+\+/, /accepted: .*dpmsolver\+\+/]],
    ["EulerDiscreteScheduler", { interpolation_type: "log_linear" }, [/"interpolation_type"/, /log_linear/]],
    ["PNDM", { prediction_type: "sample" }, [/"prediction_type"/, /"sample"/, /epsilon, v_prediction/]],
    ["LMS", { timestep_spacing: "middle" }, [/"timestep_spacing"/, /middle/]],
    ["Euler", { beta_schedule: "sigmoid" }, [/"beta_schedule"/, /sigmoid/]],
  ];
  for (const [className, config, patterns] of cases) await rejectsConfig(t, className, config, patterns);
});

// Timesteps of the spacings and modes the fixtures do not cover, from diffusers' definitions
// (Lin et al. 2023, table 2, for the DDIM spacings; 1000 training steps, 10 inference steps).
t.test("timestep spacings and PNDM's Runge–Kutta warm-up", async (t) => {
  const x0 = { data: new Float32Array(4), shape: [1, 1, 2, 2] };
  const timesteps = async (className, config) =>
    (await native().components.scheduler({ className, config: JSON.stringify(config), steps: 10, x0, eps: [] })).timesteps;
  const down = (from, by, n) => Array.from({ length: n }, (_, i) => from - by * i);
  t.same(await timesteps("DDIM", { timestep_spacing: "leading", steps_offset: 1 }), down(901, 100, 10), "DDIM leading");
  t.same(await timesteps("DDIM", { timestep_spacing: "trailing" }), down(999, 100, 10), "DDIM trailing");
  t.same(await timesteps("DDIM", { timestep_spacing: "linspace" }), down(999, 111, 10), "DDIM linspace");
  t.same(await timesteps("Euler", { timestep_spacing: "trailing" }), down(999, 100, 10), "Euler trailing");
  // Three Runge–Kutta steps of 4 model calls each (at t, t − 50, t − 50, t − 100) over the last 4
  // timesteps, then PLMS from the 4th-last timestep on: steps + 9 calls.
  const rk = [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601];
  t.same(await timesteps("PNDM", { skip_prk_steps: false, steps_offset: 1 }), [...rk, ...down(601, 100, 7)], "PNDM with prk steps");
});

t.test("steps outside 1…num_train_timesteps are invalid arguments", async (t) => {
  const x0 = { data: new Float32Array(4), shape: [1, 1, 2, 2] };
  for (const steps of [0, 1001]) {
    const e = await native()
      .components.scheduler({ className: "DDIM", config: "{}", steps, x0, eps: [] })
      .then(() => null, (err) => err);
    t.equal(e?.code, "ERR_OVAM_INVALID_ARGUMENT", `steps ${steps}: ${e?.message}`);
  }
});
