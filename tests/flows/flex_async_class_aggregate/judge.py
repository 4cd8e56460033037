import asyncio

class Judge:
    async def __call__(self, score: int) -> dict:
        await asyncio.sleep(0)
        return {"passed": score >= 50, "score": score}

    async def __aggregate__(self, results):
        return {"pass_rate": sum(r["passed"] for r in results) / len(results),
                "mean": sum(r["score"] for r in results) / len(results)}
