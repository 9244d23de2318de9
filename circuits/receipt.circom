pragma circom 2.1.0;

// AITBC receipt circuit: a Groth16 proof that the prover knows the private fields of a job
// receipt (input hash, output hash, model digest, units, unit price, salt) whose Poseidon
// commitment is the public `commitment`, that units and price are in range, and that
// units x unit price is the public `total`, which does not exceed the public `escrow`.
// The job id and miner address (as field elements) are public inputs, so a proof made for
// one job or one miner does not verify for another. See docs/zk.md for what this does NOT prove.
//
// Include paths resolve against circomlib 2.0.5's circuits/ folder (`-l` on the command line).

include "poseidon.circom";
include "bitify.circom";
include "comparators.circom";

template ReceiptCommitment() {
    // Public inputs (this order is the order of the public signals)
    signal input commitment;
    signal input total;
    signal input escrow;
    signal input jobIdHash;
    signal input minerHash;

    // Private inputs
    signal input inputHash;
    signal input outputHash;
    signal input modelDigest;
    signal input units;
    signal input unitPrice;
    signal input salt;

    // Range checks: units < 2^32, unit price and escrow < 2^64 (so the product cannot wrap the field)
    component unitsBits = Num2Bits(32);
    unitsBits.in <== units;
    component priceBits = Num2Bits(64);
    priceBits.in <== unitPrice;
    component escrowBits = Num2Bits(64);
    escrowBits.in <== escrow;

    // units x unit price = total  (< 2^96 by the range checks above)
    signal product <== units * unitPrice;
    product === total;

    // total <= escrow
    component fits = LessEqThan(96);
    fits.in[0] <== total;
    fits.in[1] <== escrow;
    fits.out === 1;

    // The commitment opens to the private fields: a binary tree of 2-input Poseidon hashes
    //   H(H(H(inputHash, outputHash), H(modelDigest, units)), H(unitPrice, salt))
    // (2-input Poseidon is the arity the Python side, light-poseidon, computes)
    component hashes = Poseidon(2);
    hashes.inputs[0] <== inputHash;
    hashes.inputs[1] <== outputHash;
    component work = Poseidon(2);
    work.inputs[0] <== modelDigest;
    work.inputs[1] <== units;
    component pay = Poseidon(2);
    pay.inputs[0] <== unitPrice;
    pay.inputs[1] <== salt;
    component left = Poseidon(2);
    left.inputs[0] <== hashes.out;
    left.inputs[1] <== work.out;
    component root = Poseidon(2);
    root.inputs[0] <== left.out;
    root.inputs[1] <== pay.out;
    root.out === commitment;

    // Bind the job and the miner into the proof (a public input no constraint touches is malleable)
    signal jobSquare <== jobIdHash * jobIdHash;
    signal minerSquare <== minerHash * minerHash;
}

component main {public [commitment, total, escrow, jobIdHash, minerHash]} = ReceiptCommitment();
