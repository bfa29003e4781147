/**
 * What `mlagent train` was given cannot work (an unknown task, a setting its collection cannot meet, a config other
 * than its run's): found before the work it would waste. The message is one line, starting "train: ", naming the
 * config field or the run directory.
 */
export class TrainInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainInputError';
  }
}

/** The run stopped at its signal (Ctrl-C) and kept what it had: `--resume` continues it. */
export class TrainStoppedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainStoppedError';
  }
}
