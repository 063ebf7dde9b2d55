// A fixed pseudo-random token sequence (mulberry32), so every engine and every run gets the same prompt.
export function randomTokens(count, vocabulary, seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({length: count}, () => Math.floor(next() * vocabulary));
}
