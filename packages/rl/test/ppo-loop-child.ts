// Child process of ppo-loop.test.ts: runs trainPpo on the fake env and SIGKILLs itself once `KILL_AFTER` rollout
// groups of iteration `KILL_AT` are saved (a kill in the middle of an iteration, between rollouts and update).
import { trainPpo } from '../src/train/ppo-loop.js';
import { LOOP_CONFIG, fakeEnv } from './ppo-loop-fixture.js';

const [modelDir, collection, out, killAt, killAfter] = process.argv.slice(2);
let saved = 0;
await trainPpo({
  modelDir,
  collection,
  out,
  config: LOOP_CONFIG,
  env: fakeEnv(),
  progress: false,
  resume: true,
  onGroupSaved: (g) => {
    if (g.iteration === Number(killAt) && ++saved === Number(killAfter)) process.kill(process.pid, 'SIGKILL');
  },
});
