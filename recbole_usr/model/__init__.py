"""The plugin's models, by RecBole model name -> module path (one model per file)."""

PLUGIN_MODELS = {
    "UnifiedSASRec": "recbole_usr.model.sequential_recommender.unified_sasrec",
    "TIGER": "recbole_usr.model.sequential_recommender.tiger",
    "SIDDecoder": "recbole_usr.model.sequential_recommender.sid_decoder",
}
