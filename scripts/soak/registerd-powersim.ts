// registerd over the simulated-power file layer (power-fs.ts), for the soak (docs/soak.md).
//   node registerd-powersim.mjs --config FILE
// SOAK_POWER_PLAN='{"afterSteps":N,"junk":true}' arms a power cut from the inside: the process kills
// itself just before the N-th durable step (a page of a flush, a truncation, a directory entry).
import { z } from 'zod';
import { main } from '../../appliance/registerd.js';
import { PowerFs } from './power-fs.js';

const PlanSchema = z.strictObject({
  afterSteps: z.number().int().min(1).optional(),
  junk: z.boolean().optional(),
  junkSeed: z.number().int().min(0).optional(),
  lie: z.boolean().optional(),
});

const plan = PlanSchema.parse(JSON.parse(process.env.SOAK_POWER_PLAN ?? '{}'));
void main(process.argv.slice(2), process.env, { fs: new PowerFs({ plan }) });
