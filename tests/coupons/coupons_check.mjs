// Runs web/static/js/coupons.js in Node.js on the cases read from stdin (JSON) and prints what it
// computes (JSON), for tests/coupons/test_coupons_js.py to compare with coupons/rules.py.
//
// A case is {"coupons": [coupon, ...], "lines": [{product_id, merchant_id, line_total}, ...]}
//   -> {"each": [off or the reason it does not apply, ...], "best": [coupon id, off] or null}
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

globalThis.window = globalThis;
const source = fileURLToPath(new URL("../../web/static/js/coupons.js", import.meta.url));
vm.runInThisContext(readFileSync(source, "utf8"), { filename: source });
const C = globalThis.LC.coupons;

const cases = JSON.parse(readFileSync(0, "utf8"));
const out = cases.map((c) => {
  const each = c.coupons.map((coupon) => {
    const r = C.discount(coupon, c.lines);
    return r.ok ? r.off : r.reason;
  });
  const best = C.best(c.coupons, c.lines);
  return { each, best: best ? [best.coupon.id, best.off] : null };
});
process.stdout.write(JSON.stringify(out));
