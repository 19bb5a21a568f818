"""The three models of a World Models run, built from its config, and where a run keeps them.

`build_models` gives V (the VAE), M (the MDN-RNN) and a template of C's parameters; `run_path`
names a file in the run directory; `restore_params` reads a stage's latest checkpoint.
"""
import os

from common.run.checkpoint import Checkpointer
from world_models_ha import controller, mdnrnn, vae


def kind_of(config) -> str:
  return 'car_racing' if config.env.name == 'car_racing' else 'doom'


def build_models(config):
  agent = config.agent
  vae_model = vae.VAE(z_size=agent.vae.z_size)
  rnn_model = mdnrnn.MDNRNN(z_size=agent.vae.z_size, hidden=agent.mdnrnn.hidden,
                            mixtures=agent.mdnrnn.mixtures, predict_done=agent.mdnrnn.predict_done,
                            restart_input=agent.mdnrnn.sequences == 'packed')
  num_inputs = controller.input_size(agent.vae.z_size, agent.mdnrnn.hidden,
                                     agent.controller.use_cell)
  kind = kind_of(config)
  template = controller.init_params(num_inputs, controller.action_dim(kind),
                                    bias=kind == 'car_racing')
  return vae_model, rnn_model, template


def run_path(config, *parts):
  return os.path.join(config.run.logdir, *parts)


def resume(config, stage, state):
  """(checkpointer, state, step) of a training stage: its latest checkpoint in the run
  directory's `stage/` restored into `state`'s structure, else `state` at step 0."""
  checkpointer = Checkpointer(run_path(config, stage), keep=config.run.keep_checkpoints)
  if checkpointer.latest_step() is None:
    return checkpointer, state, 0
  state, meta = checkpointer.restore(state)
  return checkpointer, state, int(meta['step'])


def restore_params(directory, target, what):
  checkpointer = Checkpointer(directory, keep=1)
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f'{directory}: no {what} checkpoint; run the {what} stage first')
  state, meta = checkpointer.restore(target)
  checkpointer.close()
  return state, meta
