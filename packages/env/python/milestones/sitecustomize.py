# Execution milestones for the reward's partial credit, recorded while the agent's script runs:
#   dataLoaded    a file under data/ was opened for reading;
#   modelTrained  at exit, a fitted model is alive (a scikit-learn estimator with fitted attributes, an
#                 xgboost/lightgbm Booster, or a torch optimizer whose parameters have gradients).
# The env puts this directory on PYTHONPATH and names the output file in MLAGENT_MILESTONES_FILE; it reads
# and deletes the file after the run. The script can write the file itself, so a milestone is a hint worth
# at most the partial credit of a failed run, never a score.
import atexit
import builtins
import io
import os

_path = os.environ.pop('MLAGENT_MILESTONES_FILE', None)

if _path:
    _path = os.path.abspath(_path)
    _open = builtins.open
    _seen = set()
    _data = os.path.realpath('data') + os.sep

    def _mark(name):
        if name in _seen:
            return
        _seen.add(name)
        try:
            with _open(_path, 'a') as f:
                f.write(name + '\n')
        except OSError:
            pass

    def _reads_data(file, mode):
        if 'dataLoaded' in _seen or not isinstance(mode, str) or any(c in mode for c in 'wax+'):
            return False
        try:
            return os.path.realpath(os.fspath(file)).startswith(_data)
        except (TypeError, ValueError):
            return False

    def _watched_open(file, mode='r', *args, **kwargs):
        if _reads_data(file, mode):
            _mark('dataLoaded')
        return _open(file, mode, *args, **kwargs)

    builtins.open = _watched_open
    io.open = _watched_open

    def _fitted(o):
        kind = type(o)
        module = getattr(kind, '__module__', '') or ''
        if module.startswith('sklearn.') and hasattr(o, 'fit'):
            return any(k.endswith('_') and not k.startswith('_') for k in getattr(o, '__dict__', {}))
        if module.startswith(('xgboost.', 'lightgbm.')) and kind.__name__ == 'Booster':
            return True
        if module.startswith('torch.optim') and hasattr(o, 'param_groups'):
            return any(p.grad is not None for g in o.param_groups for p in g.get('params', []))
        return False

    def _at_exit():
        import gc
        for o in gc.get_objects():
            try:
                if _fitted(o):
                    _mark('modelTrained')
                    return
            except Exception:
                continue

    atexit.register(_at_exit)
