"""Where DreamerV3's train step spends its time, ours beside the reference code, on one machine.

    python -m experiments.profile_vs_reference --reference DIR [--inputs image|vector]
        [--size size1m] [--updates 5] [--json OUT]

DIR is danijar/dreamerv3 at f8817c4 (patched in a temporary copy, as
experiments/reference_code.py does). Both agents are built from their own presets for the
same suite and size (`--inputs image`: Crafter, 64x64x3 images and 17 discrete actions;
`vector`: DMC proprio, a 24-dim vector and 6 continuous actions), float32, batch 16 x 64, with
no replay context on either side (the reference's needs latents from its replay; it is one
step in 65). Each train step (world model, imagination, actor and critic, optimizer) is
jitted, run once, then timed over `--updates` rounds of one call of each, alternating (median).
One more call of each runs under `jax.profiler`, and the time of every XLA:CPU thunk (the CPU's kernels; self time, children
excluded) is attributed through the compiled HLO's instruction names to:
  - place: the loop it runs in, named by the loop's trip count (64 steps: the observe scan,
    15: imagination, ...), or the step outside loops; forward or backward (the op's name
    stack holds `transpose(` in the backward pass);
  - kind: matmul, convolution, elementwise, copy/transpose, slice/update, reduce, control (a
    loop's or branch's own bookkeeping), other (random bits);
  - module: encoder, rssm, decoder, heads (reward, continue, actor, critic), optimizer,
    other (losses, returns, sampling), from the name stack's module names.
It also counts thunks per step (what the GPU calls kernel launches) and the step's time
outside any thunk (the runtime's own overhead between them).
"""
import argparse
import collections
import functools
import glob
import gzip
import json
import re
import shutil
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import reference_code

BATCH, LENGTH = 16, 64
INPUTS = {
    # our suite, the reference's preset, the action space (discrete n or continuous dims)
    'image': dict(suite='crafter', env='crafter_reward', reference='crafter', discrete=17),
    'vector': dict(suite='dmc_proprio', env='dmc_walker_walk', reference='dmc_proprio',
                   continuous=6, vector=24),
}
# Name-stack tokens of both implementations (the reference's ninjax scopes, our Flax module
# classes) -> one module name; the innermost token that matches wins.
MODULES = [
    (r'^(enc|Encoder)$', 'encoder'),
    (r'^(dyn|RSSM.*)$', 'rssm'),
    (r'^(dec|Decoder)$', 'decoder'),
    (r'^(rew|con|pol|val|slowval|Head|Actor|Critic)$', 'heads'),
    (r'^(opt|optimizer|adam.*|scale_by_.*|clip.*|tree_bias_correction)$', 'optimizer'),
]


# ------------------------------------------------------------------ compiled HLO


def parse_hlo(text):
  """{instruction: info} of a compiled module's text: its computation, opcode, op_name, the
  computations it calls, and (while loops) the known trip count."""
  instructions, computation = {}, None
  for line in text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith('{'):
      computation = line.split()[1 if line.startswith('ENTRY') else 0].lstrip('%')
      continue
    match = re.match(r'\s+(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$', line)
    if not match or computation is None:
      continue
    name, rest = match.groups()
    opcode = re.search(r'\s([a-z][\w\-]*)\(', ' ' + rest)
    op_name = re.search(r'op_name="([^"]*)"', rest)
    trips = re.search(r'known_trip_count":\{"n":"(\d+)"', rest)
    called = re.findall(r'(?:body|condition|calls|to_apply)=%?([\w.\-]+)', rest) + [
        c for group in re.findall(r'(?:branch|called)_computations=\{([^}]*)\}', rest)
        for c in group.split(',')]
    instructions[name] = dict(
        computation=computation, opcode=opcode.group(1) if opcode else '',
        op_name=op_name.group(1) if op_name else '', trips=int(trips.group(1)) if trips else 0,
        calls=[c.strip().lstrip('%') for c in called])
  return instructions


def _callers(instructions):
  """{computation: instruction that calls it}."""
  return {c: name for name, info in instructions.items() for c in info['calls']}


def _loops(name, instructions, callers):
  """Trip counts of the while loops around `name`, innermost first."""
  trips, computation = [], instructions[name]['computation']
  while computation in callers:
    caller = callers[computation]
    if instructions[caller]['opcode'] == 'while':
      trips.append(instructions[caller]['trips'])
    computation = instructions[caller]['computation']
  return trips


def _opcodes_by_computation(instructions):
  out = collections.defaultdict(set)
  for info in instructions.values():
    out[info['computation']].add(info['opcode'])
  return out


def kind_of(name, instructions, opcodes):
  """matmul, convolution, elementwise, copy/transpose, slice/update, reduce or other."""
  info = instructions[name]
  if info['opcode'] in ('while', 'conditional'):
    return 'control'   # its self time: the loop's or branch's own bookkeeping
  inner = set([info['opcode']])
  if info['opcode'] in ('fusion', 'call'):   # a call runs its computation inline
    inner = set().union(*(opcodes.get(c, set()) for c in info['calls']))
  if inner & {'dot', 'custom-call'} or name.startswith(('ynn_', 'dot')):
    return 'matmul'
  if 'convolution' in inner:
    return 'convolution'
  if inner & {'reduce', 'reduce-window', 'sort'}:
    return 'reduce'
  if inner & {'dynamic-update-slice', 'dynamic-slice', 'slice', 'concatenate', 'pad',
              'gather', 'scatter'}:
    return 'slice/update'
  if inner <= {'copy', 'transpose', 'bitcast', 'parameter', 'tuple', 'get-tuple-element'}:
    return 'copy/transpose'
  return 'other' if inner & {'rng', 'rng-bit-generator'} else 'elementwise'


def module_of(op_name):
  tokens = [re.sub(r'^(?:transpose\(|jvp\()+|\)+$', '', t) for t in op_name.split('/')]
  for token in reversed(tokens):
    for pattern, module in MODULES:
      if re.match(pattern, token):
        return module
  return 'other'


# ------------------------------------------------------------------ the trace


def thunk_times(trace_dir, instructions):
  """[(instruction, self microseconds)] of every thunk event in the trace under `trace_dir`."""
  path = glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True)[0]
  with gzip.open(path) as file:
    data = json.load(file)
  return self_times([e for e in (data['traceEvents'] if isinstance(data, dict) else data)
                     if e.get('ph') == 'X' and e.get('name') in instructions])


def self_times(events):
  """[(name, duration minus the durations of the events nested in it)] of complete trace
  events ({'name', 'tid', 'ts', 'dur'}); nesting is per thread."""
  out = []
  for tid in {e['tid'] for e in events}:
    stack = []   # [end, name, self time]
    for event in sorted((e for e in events if e['tid'] == tid),
                        key=lambda e: (e['ts'], -e.get('dur', 0))):
      start, duration = event['ts'], event.get('dur', 0)
      while stack and stack[-1][0] <= start:
        out.append(tuple(stack.pop()[1:]))
      if stack:
        stack[-1][2] -= duration
      stack.append([start + duration, event['name'], duration])
    out += [tuple(s[1:]) for s in stack]
  return out


def breakdown(compiled, call, trace_dir, length=LENGTH):
  """Times one traced `call()`; returns the thunk attribution (see the module docstring)."""
  instructions = parse_hlo(compiled.as_text())
  callers, opcodes = _callers(instructions), _opcodes_by_computation(instructions)
  shutil.rmtree(trace_dir, ignore_errors=True)
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    start = time.perf_counter()
    jax.block_until_ready(call())
    wall_us = (time.perf_counter() - start) * 1e6
  times = thunk_times(trace_dir, instructions)
  place, kind, module, top = (collections.Counter() for _ in range(4))
  for name, micros in times:
    info = instructions[name]
    loops = _loops(name, instructions, callers)
    if info['opcode'] == 'while':   # its self time is its own loop's bookkeeping
      loops = [info['trips']] + loops
    where = f'loop x{loops[0]}' if loops else 'outside loops'
    if loops and loops[0] == length:
      where += ' (observe)'
    direction = 'backward' if 'transpose(' in info['op_name'] else 'forward'
    place[f'{where}, {direction}'] += micros
    kind[kind_of(name, instructions, opcodes)] += micros
    module[module_of(info['op_name'])] += micros
    top[re.sub(r'\.\d+', '', info['op_name'])[-90:]] += micros
  total = sum(micros for _, micros in times)
  to_ms = lambda counter: {k: round(v / 1e3, 2) for k, v in counter.most_common()}
  return {'traced_step_ms': round(wall_us / 1e3, 1), 'thunk_ms': round(total / 1e3, 1),
          'outside_thunks_ms': round((wall_us - total) / 1e3, 1), 'thunks': len(times),
          'hlo_instructions': len(instructions), 'place_ms': to_ms(place),
          'kind_ms': to_ms(kind), 'module_ms': to_ms(module),
          'top_ops_ms': dict(list(to_ms(top).items())[:25])}


# ------------------------------------------------------------------ the two train steps


def spaces(inputs):
  from common.envs.spaces import Space  # pylint: disable=g-import-not-at-top
  spec = INPUTS[inputs]
  obs = {'reward': Space(np.float32, ()), 'is_first': Space(bool, ()),
         'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}
  if inputs == 'image':
    obs['image'] = Space(np.uint8, (64, 64, 3), 0, 255)
    act = Space(np.int32, (), 0, spec['discrete'] - 1)
  else:
    obs['vector'] = Space(np.float32, (spec['vector'],))
    act = Space(np.float32, (spec['continuous'],), -1.0, 1.0)
  return obs, act


def make_batch(obs_space, act_space, seed=0):
  rng = np.random.default_rng(seed)
  batch = {}
  for key, space in obs_space.items():
    shape = (BATCH, LENGTH) + tuple(space.shape)
    if space.dtype == bool:
      batch[key] = np.zeros(shape, bool)
    elif np.issubdtype(space.dtype, np.integer):
      batch[key] = rng.integers(0, 256, shape).astype(space.dtype)
    else:
      batch[key] = rng.normal(size=shape).astype(np.float32)
  batch['is_first'][:, 0] = True
  if act_space.discrete:
    batch['action'] = rng.integers(0, act_space.n, (BATCH, LENGTH)).astype(np.int32)
  else:
    batch['action'] = rng.uniform(-1, 1, (BATCH, LENGTH) + act_space.shape).astype(np.float32)
  return batch


def reference_step(reference_dir, inputs, size, obs_space, act_space, batch):
  """(jitted train, its arguments) of the reference at its preset for `inputs` and `size`."""
  import ninjax as nj  # pylint: disable=g-import-not-at-top
  elements, reference_agent, presets = reference_code.load_reference(reference_dir)
  config = elements.Config(presets['defaults'])
  for name in (INPUTS[inputs]['reference'], size):
    config = config.update(presets[name])
  config = config.update({
      'jax.platform': 'cpu', 'jax.compute_dtype': 'float32', 'jax.prealloc': False,
      'jax.enable_policy': False, 'batch_size': BATCH, 'batch_length': LENGTH,
      'replay_context': 0, 'logdir': tempfile.mkdtemp(prefix='dreamerv3-reference-logdir-')})
  outer = reference_code.build_reference(elements, reference_agent, config, obs_space,
                                           act_space, BATCH, LENGTH)
  train = jax.jit(lambda s, c, d: nj.pure(outer.model.train)(s, c, d, seed=0))
  return train, reference_code.reference_train_inputs(outer, batch)


def our_step(inputs, size, obs_space, act_space, batch):
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  from dreamer import configs  # pylint: disable=g-import-not-at-top
  argv = ['--config', 'dreamerv3', '--env', INPUTS[inputs]['env'], '--suite',
          INPUTS[inputs]['suite'], '--size', size, '--logdir', tempfile.mkdtemp()]
  for assignment in (f'run.batch_size={BATCH}', f'run.batch_length={LENGTH}',
                     'run.precision=float32', 'agent.replay_context=0'):
    argv += ['--set', assignment]
  config = config_lib.parse(argv, configs.PRESETS, 'experiments.profile_vs_reference')
  agent = agent_lib.make_agent(config, obs_space, act_space)
  state = jax.jit(agent.init)(jax.random.PRNGKey(0))
  return jax.jit(agent.train), (state, {k: jnp.asarray(v) for k, v in batch.items()})


def measure(steps, updates):
  """{name: timing and breakdown} of the jitted steps {name: (train, args)}. The timed calls
  alternate between them (one of each per round), so a drift in the machine's speed falls on
  both alike; each is then traced once. Tracing costs time per thunk, so the breakdown of the
  step with more thunks is inflated more: its figures are shares, the timing is untraced."""
  compiled, results = {}, {}
  for name, (train, args) in steps.items():
    start = time.perf_counter()
    compiled[name] = train.lower(*args).compile()
    results[name] = {'compile_s': round(time.perf_counter() - start, 1)}
    jax.block_until_ready(compiled[name](*args))   # warm-up
  seconds = {name: [] for name in steps}
  for _ in range(updates):
    for name, (_, args) in steps.items():
      start = time.perf_counter()
      jax.block_until_ready(compiled[name](*args))
      seconds[name].append(time.perf_counter() - start)
  for name, (_, args) in steps.items():
    median = float(np.median(seconds[name]))
    results[name].update(seconds_per_update=round(median, 4),
                         updates_per_s=round(1 / median, 3),
                         seconds=[round(s, 4) for s in seconds[name]])
    results[name].update(breakdown(compiled[name], functools.partial(compiled[name], *args),
                                   tempfile.mkdtemp(prefix=f'profile-{name}-')))
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.profile_vs_reference',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--reference', required=True, help='danijar/dreamerv3 at f8817c4')
  parser.add_argument('--inputs', default='image', choices=sorted(INPUTS))
  parser.add_argument('--size', default='size1m')
  parser.add_argument('--updates', type=int, default=5)
  parser.add_argument('--json', help='write the report here')
  args = parser.parse_args(argv)
  jax.config.update('jax_platforms', 'cpu')
  obs_space, act_space = spaces(args.inputs)
  batch = make_batch(obs_space, act_space)
  try:
    steps = {'reference': reference_step(args.reference, args.inputs, args.size, obs_space,
                                         act_space, batch),
             'ours': our_step(args.inputs, args.size, obs_space, act_space, batch)}
  except (FileNotFoundError, KeyError, ValueError) as error:
    print(f'profile_vs_reference: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  report = {'inputs': args.inputs, 'size': args.size, 'batch': [BATCH, LENGTH],
            'device': jax.devices()[0].device_kind, 'implementations': {}}
  report['implementations'] = measure(steps, args.updates)
  ours, reference = (report['implementations'][k] for k in ('ours', 'reference'))
  report['speedup'] = round(reference['seconds_per_update'] / ours['seconds_per_update'], 3)
  if args.json:
    with open(args.json, 'w') as file:
      json.dump(report, file, indent=1)
  print(json.dumps(report, indent=1))


if __name__ == '__main__':
  main()
