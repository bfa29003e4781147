/**
 * Keeps the first and last bytes of a stream and counts the rest, so a script that prints gigabytes costs
 * the host at most `budget` bytes. Head and tail get half the budget each.
 */
export class HeadTailBuffer {
  private head: Buffer[] = [];
  private headLen = 0;
  private tail: Buffer[] = [];
  private tailLen = 0;
  total = 0;

  constructor(private readonly budget: number) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    const headRoom = Math.ceil(this.budget / 2) - this.headLen;
    if (headRoom > 0) {
      const part = chunk.subarray(0, headRoom);
      this.head.push(part);
      this.headLen += part.length;
      chunk = chunk.subarray(part.length);
    }
    if (chunk.length === 0) return;
    const tailMax = Math.floor(this.budget / 2);
    if (chunk.length >= tailMax) {
      this.tail = [chunk.subarray(chunk.length - tailMax)];
      this.tailLen = tailMax;
      return;
    }
    this.tail.push(chunk);
    this.tailLen += chunk.length;
    // Drop whole chunks from the front, then trim the first one: a ring buffer over chunks.
    while (this.tailLen - this.tail[0].length >= tailMax) this.tailLen -= this.tail.shift()!.length;
    const excess = this.tailLen - tailMax;
    if (excess > 0) {
      this.tail[0] = this.tail[0].subarray(excess);
      this.tailLen -= excess;
    }
  }

  toString(): string {
    const head = Buffer.concat(this.head).toString('utf8');
    const tail = Buffer.concat(this.tail).toString('utf8');
    const cut = this.total - this.headLen - this.tailLen;
    if (cut === 0) return head + tail;
    const nl = head.endsWith('\n') || head === '' ? '' : '\n';
    return `${head}${nl}[... ${cut} bytes cut ...]\n${tail}`;
  }
}
