/**
 * The small schema language plugin options and profiles are checked against. Every key
 * that is not declared is an error naming its path; values are checked for type and range.
 */
export type Schema =
  | { type: "boolean"; doc?: string }
  | {
    type: "string";
    doc?: string;
    enum?: readonly string[];
    /** Returns a reason when the value is bad. */
    check?: (v: string) => string | undefined;
  }
  | {
    type: "integer";
    doc?: string;
    min?: number;
    max?: number;
    /** Returns a reason when the value is bad (after the range check). */
    check?: (v: number) => string | undefined;
  }
  | { type: "number"; doc?: string; min?: number; max?: number }
  | { type: "list"; doc?: string; items: Schema }
  /** A map with free string keys, every value of one schema. */
  | { type: "map"; doc?: string; values: Schema; keyCheck?: (k: string) => string | undefined }
  | ObjectSchema
  /** Either of several schemas (first that fits wins), e.g. a string or an object. */
  | { type: "oneOf"; doc?: string; options: Schema[] };

export interface ObjectSchema {
  type: "object";
  doc?: string;
  fields: Record<string, Schema>;
}
