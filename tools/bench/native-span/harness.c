/* Times block.s (see span.py): nanoseconds per pass over the span, divided by the caller's count of 8-wide
 * multiply-adds in it. The frame is zero-ish floats, so no denormals or NaNs slow the arithmetic. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void block(char *frame, long iters);

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s ITERATIONS MULADDS_PER_PASS\n", argv[0]); return 2; }
  long iters = atol(argv[1]);
  double muladds = atof(argv[2]);
  float *frame = aligned_alloc(64, 1 << 20);
  for (int i = 0; i < (1 << 18); i++) frame[i] = 1e-3f * (float)(i % 7);
  block((char *)frame, 10);
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    block((char *)frame, iters);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (iters * muladds);
    if (ns < best) best = ns;
  }
  printf("best of 5: %.3f ns per 8-wide multiply-add\n", best);
  return 0;
}
