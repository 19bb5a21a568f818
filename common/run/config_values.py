"""Typed values for nested frozen-dataclass configs: parsing, type checks, key suggestions.

The value half of `common.run.config`: converts `--set` text ('96,96', '1e6', 'yes',
'none') and loaded YAML values to a field's declared type (`convert`), checks a
whole config against its annotations (`check_types`), builds a schema from
nested dicts (`from_dict`), and names the closest valid keys when one is
unknown (`unknown_key`). `common.run.config` re-exports what callers use.
"""
import collections.abc
import dataclasses
import difflib
import types
import typing
from typing import Any

import yaml

_TRUE = ('true', 'yes', 'on', '1')
_FALSE = ('false', 'no', 'off', '0')
_NONE = ('none', 'null', '~')


class ConfigError(ValueError):
  """A bad config; its message is one line that names the key and the fix."""


# --- Types -----------------------------------------------------------------

def field_hints(cls) -> dict:
  """Field name -> type, resolving string annotations (PEP 563)."""
  try:
    return typing.get_type_hints(cls)
  except Exception:  # unresolvable forward reference: fall back per field
    return {f.name: f.type if not isinstance(f.type, str) else Any
            for f in dataclasses.fields(cls)}


def init_fields(obj_or_cls):
  """The dataclass fields that `__init__` takes (the ones a config sets)."""
  return [f for f in dataclasses.fields(obj_or_cls) if f.init]


def _is_union(hint) -> bool:
  return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _element_hints(hint, current):
  """Element types of a tuple/list hint: (types, variadic)."""
  args = typing.get_args(hint)
  if args and args[-1] is Ellipsis:
    return (args[0],), True
  if args:
    return args, False
  # Bare `tuple`: infer from the current value if its elements agree.
  kinds = {type(x) for x in current or ()}
  if len(kinds) == 1:
    return (kinds.pop(),), True
  return (Any,), True


def _type_name(hint, current=None) -> str:
  origin = typing.get_origin(hint)
  if hint is Any:
    return 'any value'
  if hint is type(None):
    return 'None'
  if origin is typing.Literal:
    return 'one of ' + ', '.join(repr(a) for a in typing.get_args(hint))
  if _is_union(hint):
    return ' or '.join(_type_name(a) for a in typing.get_args(hint))
  if hint in (tuple, list) or origin in (tuple, list):
    elements, variadic = _element_hints(hint, current)
    container = 'tuple' if (hint is tuple or origin is tuple) else 'list'
    if variadic:
      inner = _type_name(elements[0])
      return container if inner == 'any value' else f'{container} of {inner}'
    return f'{container} ({", ".join(_type_name(e) for e in elements)})'
  if origin is dict:
    return 'mapping'
  return getattr(hint, '__name__', str(hint))


class _BadValue(Exception):
  pass


def _split_items(text: str) -> list:
  """Splits '1, (2, 3), "a,b"' at top-level commas."""
  items, depth, quote, start = [], 0, '', 0
  for i, char in enumerate(text):
    if quote:
      quote = '' if char == quote else quote
    elif char in '\'"':
      quote = char
    elif char in '([{':
      depth += 1
    elif char in ')]}':
      depth -= 1
    elif char == ',' and depth == 0:
      items.append(text[start:i])
      start = i + 1
  items.append(text[start:])
  items = [item.strip() for item in items]
  if items and items[-1] == '' and len(items) > 1:  # trailing comma: '96,'
    items.pop()
  return items


def unquote(text: str) -> str:
  if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
    return text[1:-1]
  return text


def _auto(text: str):
  """A scalar of unknown type from text: int, float, bool, None or str."""
  for convert in (int, float):
    try:
      return convert(text)
    except ValueError:
      pass
  if text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  if text.lower() in _NONE:
    return None
  return unquote(text)


def _coerce(value, hint, current=None, mode='cli'):
  """Converts `value` to type `hint`; raises _BadValue when it does not fit.

  mode 'cli': `value` may be command-line text ('96,96', '1e6', 'yes');
  'yaml': a loaded YAML value (text still accepted for numbers, '1e-4');
  'strict': a Python value that must already have the type (validation).
  `current` is the field's present value (element type of a bare `tuple`).
  """
  origin = typing.get_origin(hint)
  text = value.strip() if isinstance(value, str) and mode != 'strict' else None
  if hint is Any:
    return _auto(text) if text is not None and mode == 'cli' else value
  if hint is type(None):
    if value is None or (text is not None and text.lower() in _NONE):
      return None
    raise _BadValue()
  if _is_union(hint):
    members = typing.get_args(hint)
    if type(None) in members and (
        value is None or (text is not None and text.lower() in _NONE)):
      return None
    for member in members:
      if member is type(None):
        continue
      try:
        return _coerce(value, member, current, mode)
      except _BadValue:
        pass
    raise _BadValue()
  if origin is typing.Literal:
    for option in typing.get_args(hint):
      try:
        if _coerce(value, type(option), None, mode) == option:
          return option
      except _BadValue:
        pass
    raise _BadValue()
  if hint is bool:
    if isinstance(value, bool):
      return value
    if isinstance(value, int) and value in (0, 1) and mode != 'strict':
      return bool(value)
    if text is not None and text.lower() in _TRUE + _FALSE:
      return text.lower() in _TRUE
    raise _BadValue()
  if hint is int:
    if isinstance(value, bool):
      raise _BadValue()
    if isinstance(value, int):
      return value
    if mode == 'strict':
      raise _BadValue()
    number = value
    if text is not None:
      try:
        return int(text)
      except ValueError:
        try:
          number = float(text)  # '1e6'
        except ValueError:
          raise _BadValue() from None
    if isinstance(number, float) and number.is_integer():
      return int(number)
    raise _BadValue()
  if hint is float:
    if isinstance(value, bool):
      raise _BadValue()
    if isinstance(value, (int, float)):
      return float(value)
    try:
      return float(text)
    except (TypeError, ValueError):
      raise _BadValue() from None
  if hint is str:
    if isinstance(value, str):
      return unquote(value) if mode == 'cli' else value
    raise _BadValue()
  if origin is collections.abc.Sequence:
    args = typing.get_args(hint)
    hint, origin = (tuple[args[0], ...], tuple) if args else (tuple, None)
  if hint in (tuple, list) or origin in (tuple, list):
    container = tuple if (hint is tuple or origin is tuple) else list
    if text is not None:
      if text[:1] in '([':
        if text[-1:] not in ')]':
          raise _BadValue()
        text = text[1:-1].strip()
      items = _split_items(text) if text else []
    elif isinstance(value, (list, tuple)):
      if mode == 'strict' and not isinstance(value, container):
        raise _BadValue()
      items = list(value)
    else:
      raise _BadValue()
    elements, variadic = _element_hints(hint, current)
    if not variadic and len(items) != len(elements):
      raise _BadValue()
    return container(
        _coerce(item, elements[0] if variadic else elements[i], None, mode)
        for i, item in enumerate(items))
  if origin is dict or hint is dict:
    if text is not None and mode == 'cli':
      try:
        value = yaml.safe_load(text)
      except yaml.YAMLError:
        raise _BadValue() from None
    if not isinstance(value, dict):
      raise _BadValue()
    args = typing.get_args(hint)
    if not args:
      return dict(value)
    return {_coerce(k, args[0], None, mode): _coerce(v, args[1], None, mode)
            for k, v in value.items()}
  if dataclasses.is_dataclass(hint) and isinstance(hint, type):
    if isinstance(value, hint):
      return value
    if isinstance(value, dict):
      return _from_dict(value, hint, '')
    raise _BadValue()
  if isinstance(hint, type) and isinstance(value, hint):
    return value
  if mode == 'strict' and not isinstance(hint, type):
    return value  # a form this module does not parse (Callable, ...)
  raise _BadValue()


def _show(value) -> str:
  return repr(value) if isinstance(value, str) else f'{value!r} ({type(value).__name__})'


def convert(value, hint, current, label, mode='cli'):
  """`_coerce`, raising a one-line ConfigError that starts with `label`."""
  try:
    return _coerce(value, hint, current, mode)
  except _BadValue:
    raise ConfigError(f'{label}: expected {_type_name(hint, current)}, '
                      f'got {_show(value)}') from None


# --- Keys ------------------------------------------------------------------

def keys(config, prefix='') -> list:
  """All dotted keys of a config: sections and leaf fields, in field order."""
  result = []
  for field in init_fields(config):
    key = prefix + field.name
    result.append(key)
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      result += keys(value, key + '.')
  return result


def unknown_key(key, valid, what='config key') -> ConfigError:
  """The error for an unknown `key`, naming up to 3 close keys of `valid`."""
  leaf = key.split('.')[-1]
  same_leaf = [k for k in valid if k.split('.')[-1] == leaf]
  close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
  leaf_close = [k for k in valid if difflib.get_close_matches(
      leaf, [k.split('.')[-1]], n=1, cutoff=0.8)]
  suggestions = list(dict.fromkeys(same_leaf + close + leaf_close))[:3]
  if suggestions:
    return ConfigError(f"unknown {what} '{key}'; did you mean "
                       f"{' or '.join(suggestions)}?")
  top = [k for k in valid if '.' not in k]
  return ConfigError(f"unknown {what} '{key}'; top-level keys are "
                     f"{', '.join(top)}")


# --- Type checks, dicts ---------------------------------------------------

def check_types(config, prefix=''):
  """Raises ConfigError if a leaf field's value does not fit its annotation."""
  hints = field_hints(type(config))
  for field in init_fields(config):
    value, key = getattr(config, field.name), prefix + field.name
    if dataclasses.is_dataclass(value):
      check_types(value, key + '.')
      continue
    hint = hints.get(field.name, Any)
    try:
      _coerce(value, hint, value, mode='strict')
    except _BadValue:
      raise ConfigError(f'invalid config: {key} must be '
                        f'{_type_name(hint, value)}, got {_show(value)}')


def _from_dict(data: dict, schema, prefix: str):
  if not isinstance(data, dict):
    raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping, "
                      f'got {_show(data)}')
  fields = {f.name: f for f in init_fields(schema)}
  for key in data:
    if key not in fields:
      raise unknown_key(prefix + str(key), [prefix + name for name in fields])
  hints, kwargs = field_hints(schema), {}
  for name, field in fields.items():
    if name not in data:
      if (field.default is dataclasses.MISSING
          and field.default_factory is dataclasses.MISSING):
        raise ConfigError(f"missing config key '{prefix + name}'")
      continue
    hint, value = hints.get(name, Any), data[name]
    default = field.default if field.default is not dataclasses.MISSING else (
        field.default_factory() if field.default_factory
        is not dataclasses.MISSING else None)
    if dataclasses.is_dataclass(default) or (
        dataclasses.is_dataclass(hint) and isinstance(hint, type)):
      kwargs[name] = _from_dict(value, type(default) if dataclasses.is_dataclass(
          default) else hint, prefix + name + '.')
    else:
      kwargs[name] = convert(value, hint, default, prefix + name, 'yaml')
  try:
    return schema(**kwargs)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {e}") from None


def from_dict(data: dict, schema_type):
  """Builds `schema_type` from nested dicts; missing keys keep defaults."""
  return _from_dict(data, schema_type, '')
