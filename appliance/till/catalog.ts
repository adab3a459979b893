// The store's catalog as the till sells from it: products, prices and tax rules, cached on the device
// so selling never waits on the network. Published by the ledger (retained MQTT), validated here.
import { z } from 'zod';

/** Money is integer minor units (cents) of the catalog's one currency. */
const minor = z.number().int().min(0).max(100_000_000);

export const TaxRateSchema = z.object({
  name: z.string().min(1).max(40),
  /** Basis points, in steps of 0.01: 1900 = 19 %, 887.5 = 8.875 % (New York City). */
  rateBp: z
    .number()
    .min(0)
    .max(10_000)
    .refine((v) => Number.isInteger(Math.round(v * 100)) && Math.abs(v * 100 - Math.round(v * 100)) < 1e-6, {
      message: 'rateBp has at most two decimals',
    }),
});

export const TaxRulesSchema = z.object({
  /** inclusive: shelf prices include tax (VAT); exclusive: tax is added at the till (US sales tax). */
  mode: z.enum(['inclusive', 'exclusive']),
  /** Tax classes by id, e.g. { standard: {name: 'VAT 19%', rateBp: 1900}, reduced: {…} }. */
  rates: z.record(z.string().min(1).max(20), TaxRateSchema),
  /** Round tax per line or once per rate on the receipt, half-up or half-even. */
  rounding: z.object({ scope: z.enum(['line', 'receipt']), mode: z.enum(['half-up', 'half-even']) }),
  /** Cash totals round to this many minor units (1 = none, 5 = 0.05); card tenders never round. */
  cashIncrementMinor: z.number().int().min(1).max(100),
});

export const ProductSchema = z.object({
  sku: z.string().min(1).max(40),
  name: z.string().min(1).max(60),
  priceMinor: minor,
  taxClass: z.string().min(1).max(20),
  /** EAN-13, UPC-A or in-store codes that ring this product up. */
  barcodes: z.array(z.string().min(1).max(40)).max(20).default([]),
  /** Price keyed in at the till (manager only). */
  openPrice: z.boolean().default(false),
});

export const CatalogSchema = z
  .object({
    version: z.number().int().min(1),
    storeId: z.string().min(1).max(64),
    /** Printed at the top of receipts. */
    storeName: z.string().min(1).max(60).optional(),
    currency: z.string().regex(/^[A-Z]{3}$/),
    tax: TaxRulesSchema,
    products: z.array(ProductSchema).max(100_000),
  })
  .superRefine((c, ctx) => {
    const skus = new Set<string>();
    const codes = new Map<string, string>();
    c.products.forEach((p, i) => {
      if (skus.has(p.sku))
        ctx.addIssue({ code: 'custom', path: ['products', i, 'sku'], message: 'duplicate sku' });
      skus.add(p.sku);
      if (!(p.taxClass in c.tax.rates)) {
        ctx.addIssue({
          code: 'custom',
          path: ['products', i, 'taxClass'],
          message: `unknown tax class ${p.taxClass}`,
        });
      }
      for (const code of p.barcodes) {
        const other = codes.get(code);
        if (other !== undefined && other !== p.sku) {
          ctx.addIssue({
            code: 'custom',
            path: ['products', i, 'barcodes'],
            message: `${code} also rings ${other}`,
          });
        }
        codes.set(code, p.sku);
      }
    });
  });

export type TaxRate = z.infer<typeof TaxRateSchema>;
export type TaxRules = z.infer<typeof TaxRulesSchema>;
export type Product = z.infer<typeof ProductSchema>;
export type Catalog = z.infer<typeof CatalogSchema>;
