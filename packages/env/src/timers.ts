/** setTimeout's longest delay (about 24.8 days); Node fires a longer one, Infinity included, after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
