// MQTT's fixed-header "remaining length" (1 to 4 bytes, 7 bits each), for tests that hand-build packets.
export function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}
