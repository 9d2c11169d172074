"""Test helper: classes that pickle like chumpy and scipy objects in official SMPL files."""

import copyreg
import sys
import types


def fake_pickled_class(monkeypatch, module: str, name: str) -> type:
  """A class that pickles as ``module.name`` with its ``__dict__`` as state (protocol 2),
  the way chumpy and scipy objects appear in the official SMPL files."""

  def reduce_ex(self, protocol):  # pylint: disable=unused-argument
    return (copyreg.__newobj__, (type(self),), dict(self.__dict__))

  cls = type(name, (), {"__reduce_ex__": reduce_ex, "__module__": module})
  parts = module.split(".")
  for i in range(1, len(parts) + 1):
    mod_name = ".".join(parts[:i])
    # Fresh fake modules for the whole package path; monkeypatch restores the real ones.
    if mod_name not in sys.modules or i == len(parts):
      mod = types.ModuleType(mod_name)
      if i == len(parts):
        setattr(mod, name, cls)
      monkeypatch.setitem(sys.modules, mod_name, mod)
  return cls
